// SPDX-License-Identifier: GPL-2.0
/*
 * A module that panics the kernel as it loads, for the test that a guest
 * dying at `insmod` fails the run at once with the panic line (not after
 * an SSH timeout, not as an SSH error).
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/panic.h>

static int __init panic_init(void)
{
	panic("kernlab test: panic at insmod");
	return 0;
}

module_init(panic_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kernlab test: panics at load");
