// SPDX-License-Identifier: GPL-2.0
/*
 * A module with one string parameter and nothing else, for the test that
 * lab values reach the guest as data: whatever the lab gives `note` must
 * show up verbatim in /sys/module/note/parameters/note, and no shell
 * metacharacter in it may run anything.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>

static char *note = "";
module_param(note, charp, 0444);
MODULE_PARM_DESC(note, "any text");

static int __init note_init(void)
{
	return 0;
}

static void __exit note_exit(void)
{
}

module_init(note_init);
module_exit(note_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kernlab test: a string parameter");
