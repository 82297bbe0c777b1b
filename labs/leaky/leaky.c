// SPDX-License-Identifier: GPL-2.0
/*
 * leaky - a slab leak fixture with a known, adjustable leak rate.
 *
 * kernlab uses it to measure its own detection limits and false-positive
 * rate: the leak is exactly one object per `every` operations, of a chosen
 * size, in a chosen cache, and nothing else changes between the arms.
 *
 * An "operation" is one call of the probed kernel function (default
 * do_unlinkat: the churn workload's unlink(2), once per file on 6.1 and
 * 6.12). A kprobe pre-handler (atomic context, so GFP_ATOMIC) counts it and,
 * depending on the parameters (all read-only after load):
 *
 *   every=N   on every N-th operation, allocate one object and keep it on a
 *             list (the leak); 0 = never.
 *   alloc=    `cache`: objects come from the module's own kmem_cache
 *             "leaky_obj" (no SLAB_ACCOUNT, no ctor); `kmalloc`: from the
 *             shared kmalloc caches (kmalloc(size, GFP_ATOMIC)).
 *   size=     object size in bytes, 8..4096 (default 256).
 *   hold=H    bounded but busy: allocate one object on EVERY operation and
 *             free the one allocated H operations earlier (a ring of H
 *             slots). High but bounded memory use; 0 = off. Independent of
 *             `every`.
 *   burst=B   heavy but clean: on every operation, allocate B objects and
 *             free them all before the operation returns (B up to 16384; a
 *             burst of 2048 objects of 256 bytes takes and returns half a
 *             MiB of slab per operation). 0 = off. Independent of the rest.
 *
 * Nothing leaks for real: rmmod frees the kept objects and the ring.
 * Counters: /proc/leaky, one "key value" pair per line.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/kernel.h>
#include <linux/kprobes.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/atomic.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/version.h>

#if LINUX_VERSION_CODE < KERNEL_VERSION(4, 18, 0)
#error "leaky needs Linux >= 4.18 (proc_create_single)"
#endif

#ifndef CONFIG_KPROBES
#error "leaky needs CONFIG_KPROBES"
#endif

#define LEAKY_SIZE_MIN		8	/* room for the list link */
#define LEAKY_SIZE_MAX		4096
#define LEAKY_HOLD_MAX		(1U << 20)
#define LEAKY_BURST_MAX		16384U
#define LEAKY_MAGIC		0x6a626f796b61656cULL	/* "leakyobj" in memory */

static unsigned int every;
module_param(every, uint, 0444);
MODULE_PARM_DESC(every, "leak one object every N operations (0 = never, default)");

static char *alloc = "cache";
module_param(alloc, charp, 0444);
MODULE_PARM_DESC(alloc, "where objects come from: cache (own kmem_cache leaky_obj, default) or kmalloc");

static unsigned int size = 256;
module_param(size, uint, 0444);
MODULE_PARM_DESC(size, "object size in bytes, 8..4096 (default 256)");

static unsigned int hold;
module_param(hold, uint, 0444);
MODULE_PARM_DESC(hold, "bounded mode: allocate on every operation, free the object from N operations earlier (0 = off, default; max 1048576)");

static unsigned int burst;
module_param(burst, uint, 0444);
MODULE_PARM_DESC(burst, "heavy mode: allocate N objects on every operation and free them all before it returns (0 = off, default; max 16384)");

static char *symbol = "do_unlinkat";
module_param(symbol, charp, 0444);
MODULE_PARM_DESC(symbol, "probed function; one call = one operation (default do_unlinkat)");

/*
 * An object. Only the first word is ours (the link of the kept list, so
 * size 8 still works); when there is room the second word is a magic that
 * finds the objects in a vmcore (crash: search -l 0x6a626f796b61656c).
 */
struct leaky_obj {
	struct leaky_obj *next;
};

static bool use_cache;
static struct kmem_cache *leaky_cache;

static DEFINE_SPINLOCK(leaky_lock);
static struct leaky_obj *kept;		/* the leak: a LIFO stack */
static void **ring;			/* hold slots, kvcalloc'd at init */

static atomic64_t stat_ops;
static atomic64_t stat_leaked;		/* objects on the kept list */
static atomic64_t stat_held;		/* ring slots in use */
static atomic64_t stat_ring_freed;	/* ring objects freed on reuse */
static atomic64_t stat_alloc_failed;
static atomic64_t stat_burst_freed;	/* burst objects freed (all of them) */

static struct proc_dir_entry *leaky_proc;

static struct leaky_obj *leaky_alloc(void)
{
	struct leaky_obj *o;

	if (use_cache)
		o = kmem_cache_zalloc(leaky_cache, GFP_ATOMIC | __GFP_NOWARN);
	else
		o = kzalloc(size, GFP_ATOMIC | __GFP_NOWARN);
	if (unlikely(!o)) {
		atomic64_inc(&stat_alloc_failed);
		return NULL;
	}
	if (size >= 2 * sizeof(u64))
		((u64 *)o)[1] = LEAKY_MAGIC;
	return o;
}

static void leaky_free(void *o)
{
	if (!o)
		return;
	if (use_cache)
		kmem_cache_free(leaky_cache, o);
	else
		kfree(o);
}

static int leaky_pre(struct kprobe *p, struct pt_regs *regs)
{
	/* Unique per call, so "every N-th" is exact under concurrency. */
	u64 n = (u64)atomic64_inc_return(&stat_ops);
	unsigned long flags;

	if (every && n % every == 0) {
		struct leaky_obj *o = leaky_alloc();

		if (o) {
			spin_lock_irqsave(&leaky_lock, flags);
			o->next = kept;
			kept = o;
			spin_unlock_irqrestore(&leaky_lock, flags);
			atomic64_inc(&stat_leaked);
		}
	}

	if (hold) {
		/* Call n uses slot (n-1) % hold: the slot of call n-hold. */
		u32 slot = (u32)((n - 1) % hold);
		void *new = leaky_alloc();	/* NULL on failure: slot emptied */
		void *old;

		spin_lock_irqsave(&leaky_lock, flags);
		old = ring[slot];
		ring[slot] = new;
		spin_unlock_irqrestore(&leaky_lock, flags);

		if (old) {
			leaky_free(old);
			atomic64_inc(&stat_ring_freed);
			if (!new)
				atomic64_dec(&stat_held);
		} else if (new) {
			atomic64_inc(&stat_held);
		}
	}
	if (burst) {
		/* Chained through their first word: no array to size. */
		struct leaky_obj *head = NULL, *o;
		unsigned int i;

		for (i = 0; i < burst; i++) {
			o = leaky_alloc();
			if (!o)
				break;
			o->next = head;
			head = o;
		}
		while (head) {
			o = head;
			head = o->next;
			leaky_free(o);
			atomic64_inc(&stat_burst_freed);
		}
	}
	return 0;
}

static struct kprobe leaky_kp = {
	.pre_handler = leaky_pre,
};

static int leaky_show(struct seq_file *m, void *v)
{
	seq_printf(m, "ops %lld\n", (long long)atomic64_read(&stat_ops));
	seq_printf(m, "leaked %lld\n", (long long)atomic64_read(&stat_leaked));
	seq_printf(m, "held %lld\n", (long long)atomic64_read(&stat_held));
	seq_printf(m, "ring_freed %lld\n", (long long)atomic64_read(&stat_ring_freed));
	seq_printf(m, "alloc_failed %lld\n", (long long)atomic64_read(&stat_alloc_failed));
	seq_printf(m, "missed %lu\n", (unsigned long)READ_ONCE(leaky_kp.nmissed));
	seq_printf(m, "every %u\n", every);
	seq_printf(m, "alloc %s\n", use_cache ? "cache" : "kmalloc");
	seq_printf(m, "size %u\n", size);
	seq_printf(m, "hold %u\n", hold);
	seq_printf(m, "burst %u\n", burst);
	seq_printf(m, "burst_freed %lld\n", (long long)atomic64_read(&stat_burst_freed));
	seq_printf(m, "symbol %s\n", symbol);
	return 0;
}

static void leaky_free_all(void)
{
	struct leaky_obj *o, *next;
	unsigned long flags;
	unsigned int i;

	spin_lock_irqsave(&leaky_lock, flags);
	o = kept;
	kept = NULL;
	spin_unlock_irqrestore(&leaky_lock, flags);
	for (; o; o = next) {
		next = o->next;
		leaky_free(o);
	}

	if (ring) {
		for (i = 0; i < hold; i++)
			leaky_free(ring[i]);
		kvfree(ring);
		ring = NULL;
	}
}

static int __init leaky_init(void)
{
	int ret;

	if (!alloc || (!sysfs_streq(alloc, "cache") && !sysfs_streq(alloc, "kmalloc"))) {
		pr_err("leaky: invalid parameter alloc='%s': must be cache or kmalloc\n",
		       alloc ? alloc : "");
		return -EINVAL;
	}
	use_cache = sysfs_streq(alloc, "cache");
	if (size < LEAKY_SIZE_MIN || size > LEAKY_SIZE_MAX) {
		pr_err("leaky: invalid parameter size=%u: must be %u..%u bytes\n",
		       size, LEAKY_SIZE_MIN, LEAKY_SIZE_MAX);
		return -EINVAL;
	}
	if (hold > LEAKY_HOLD_MAX) {
		pr_err("leaky: invalid parameter hold=%u: must be at most %u\n",
		       hold, LEAKY_HOLD_MAX);
		return -EINVAL;
	}
	if (burst > LEAKY_BURST_MAX) {
		pr_err("leaky: invalid parameter burst=%u: must be at most %u\n",
		       burst, LEAKY_BURST_MAX);
		return -EINVAL;
	}
	if (!symbol || !*symbol) {
		pr_err("leaky: invalid parameter symbol: must not be empty\n");
		return -EINVAL;
	}

	if (use_cache) {
		/* flags 0: no SLAB_ACCOUNT, no ctor (mergeable: boot with
		 * slub_nomerge to see it on its own in /proc/slabinfo). */
		leaky_cache = kmem_cache_create("leaky_obj", size, 0, 0, NULL);
		if (!leaky_cache)
			return -ENOMEM;
	}

	if (hold) {
		ring = kvcalloc(hold, sizeof(*ring), GFP_KERNEL);
		if (!ring) {
			ret = -ENOMEM;
			goto err_cache;
		}
	}

	leaky_proc = proc_create_single("leaky", 0444, NULL, leaky_show);
	if (!leaky_proc) {
		ret = -ENOMEM;
		goto err_ring;
	}

	leaky_kp.symbol_name = symbol;
	ret = register_kprobe(&leaky_kp);
	if (ret < 0) {
		pr_err("leaky: register_kprobe(%s) failed: %d\n", symbol, ret);
		goto err_proc;
	}

	pr_info("leaky: hooked %s (every=%u alloc=%s size=%u hold=%u burst=%u)\n",
		symbol, every, use_cache ? "cache" : "kmalloc", size, hold, burst);
	return 0;

err_proc:
	proc_remove(leaky_proc);
err_ring:
	kvfree(ring);
	ring = NULL;
err_cache:
	kmem_cache_destroy(leaky_cache);	/* NULL-safe */
	return ret;
}

static void __exit leaky_exit(void)
{
	long long ops, leaked, held;

	/* Disarms the probe and waits for running handlers. */
	unregister_kprobe(&leaky_kp);
	proc_remove(leaky_proc);

	ops = atomic64_read(&stat_ops);
	leaked = atomic64_read(&stat_leaked);
	held = atomic64_read(&stat_held);
	leaky_free_all();
	kmem_cache_destroy(leaky_cache);

	pr_info("leaky: unloaded: ops=%lld leaked=%lld held=%lld alloc_failed=%lld missed=%lu; all freed\n",
		ops, leaked, held, (long long)atomic64_read(&stat_alloc_failed),
		(unsigned long)leaky_kp.nmissed);
}

module_init(leaky_init);
module_exit(leaky_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Slab leak fixture: one object every N probed calls, in its own cache or kmalloc");
MODULE_AUTHOR("kernlab");
