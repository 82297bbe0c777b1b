// SPDX-License-Identifier: GPL-2.0
/*
 * khm - emulation of a vendor "kernel hook module" reference leak.
 *
 * The vendor module hooked file close roughly like this:
 *
 *	struct path *ppath = &file->f_path;
 *	path_get(ppath);
 *	orig_close(file);	// last fput -> __fput() NULLs file->f_path
 *	scan(ppath);
 *	path_put(ppath);	// sees NULLs: dentry + vfsmount ref leaked
 *
 * On 6.1 that exact sequence cannot happen (__fput is deferred to task_work
 * and no longer clears f_path), so we emulate its effect with a kretprobe on
 * filp_close():
 *
 *   entry:  copy file->f_path, path_get() it, remember whether this close
 *           drops the last file reference (file_count(file) == 1).
 *   return: leak=1 and last reference -> keep the references (the bug);
 *           otherwise drop them again.
 *
 * Dropping references in the return handler (atomic context, must not sleep):
 *
 *   dentry: lockref_put_not_zero() only decrements when the count stays >0,
 *           which is exactly dput()'s lock-free fast path; it never sleeps.
 *           If it refuses, ours is the last dentry reference and the whole
 *           path is handed to a workqueue for a normal path_put().
 *   mount:  mntput() -> mntput_no_expire() never sleeps except for the final
 *           put of an MNT_INTERNAL mount (cleanup_mnt() runs inline).  Final
 *           puts of ordinary mounts are pushed to task_work/delayed work by
 *           mntput itself.  So mntput() is called inline unless the mount is
 *           MNT_INTERNAL and we cannot prove the file still pins it, in which
 *           case the mount put is deferred as well.
 *
 * Deferred items come from a mempool (GFP_ATOMIC, with a preallocated reserve)
 * so the deferral works under memory pressure, which is what this lab creates.
 *
 * Counters: /proc/khm.  Parameter: leak (0/1, read-only after load).
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/kernel.h>
#include <linux/version.h>
#include <linux/kprobes.h>
#include <linux/ptrace.h>
#include <linux/fs.h>
#include <linux/file.h>
#include <linux/path.h>
#include <linux/dcache.h>
#include <linux/lockref.h>
#include <linux/mount.h>
#include <linux/sched.h>
#include <linux/cpumask.h>
#include <linux/workqueue.h>
#include <linux/mempool.h>
#include <linux/slab.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/atomic.h>

#if LINUX_VERSION_CODE < KERNEL_VERSION(4, 18, 0)
#error "khm needs Linux >= 4.18 (proc_create_single)"
#endif

#ifndef CONFIG_KRETPROBES
#error "khm needs CONFIG_KRETPROBES"
#endif

#define KHM_POOL_RESERVE	256

static int leak;
module_param(leak, int, 0444);
MODULE_PARM_DESC(leak, "1 = leak the path reference on last-reference closes (emulate the vendor bug); 0 = balanced (default)");

/*
 * Function to probe; its first argument must be the struct file *.  Up to
 * 6.6 close(2) calls filp_close().  Since 6.7 it does file_close_fd() +
 * filp_flush() + __fput_sync() and filp_close() is left to exit and dup2,
 * so the close path's common point is filp_flush() (filp_close() calls it
 * too).  Either way the file still holds its references while the probed
 * function runs and __fput() comes after it returns.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 7, 0)
#define KHM_DEFAULT_SYMBOL "filp_flush"
#else
#define KHM_DEFAULT_SYMBOL "filp_close"
#endif
static char *symbol = KHM_DEFAULT_SYMBOL;
module_param(symbol, charp, 0444);
MODULE_PARM_DESC(symbol, "probed close function (default: " KHM_DEFAULT_SYMBOL " on this kernel)");

/* Per-kretprobe-instance data (ri->data). */
struct khm_inst {
	struct path path;
	bool last_ref;
};

/* Deferred put, executed in process context. */
struct khm_deferred {
	struct work_struct work;
	struct path path;
	bool put_dentry;	/* false: dentry already dropped atomically */
};

static atomic_long_t stat_closes;
static atomic_long_t stat_last_ref_closes;
static atomic_long_t stat_leaked;
static atomic_long_t stat_put_atomic;
static atomic_long_t stat_put_deferred;
static atomic_long_t stat_put_lost;	/* mempool exhausted: reference lost */
static atomic_long_t stat_inflight;	/* entry seen, return not yet */

static struct workqueue_struct *khm_wq;
static mempool_t *khm_pool;
static struct proc_dir_entry *khm_proc;

static void khm_deferred_fn(struct work_struct *work)
{
	struct khm_deferred *d = container_of(work, struct khm_deferred, work);

	if (d->put_dentry)
		path_put(&d->path);	/* dput() + mntput(), may sleep */
	else
		mntput(d->path.mnt);
	mempool_free(d, khm_pool);
}

static void khm_defer(const struct path *path, bool put_dentry)
{
	struct khm_deferred *d;

	d = mempool_alloc(khm_pool, GFP_ATOMIC | __GFP_NOWARN);
	if (unlikely(!d)) {
		/* Cannot happen short of >KHM_POOL_RESERVE outstanding items
		 * under total memory exhaustion; never put unsafely. */
		atomic_long_inc(&stat_put_lost);
		return;
	}
	INIT_WORK(&d->work, khm_deferred_fn);
	d->path = *path;
	d->put_dentry = put_dentry;
	atomic_long_inc(&stat_put_deferred);
	queue_work(khm_wq, &d->work);
}

/*
 * Is an inline mntput() guaranteed not to be the final put of an
 * MNT_INTERNAL mount?  True for ordinary mounts (their final put is async
 * anyway), and for last-reference closes by ordinary user tasks: there the
 * file's own __fput() is queued as task_work and runs only on return to user
 * space, after this handler, so the file still pins the mount.
 */
static bool khm_mntput_inline_ok(const struct path *path, bool last_ref)
{
	if (!(path->mnt->mnt_flags & MNT_INTERNAL))
		return true;
	return last_ref && !(current->flags & (PF_KTHREAD | PF_EXITING));
}

static int khm_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct khm_inst *inst = (struct khm_inst *)ri->data;
	struct file *file = (struct file *)regs_get_kernel_argument(regs, 0);

	if (unlikely(!file || !file->f_path.dentry || !file->f_path.mnt))
		return 1;	/* nothing taken: skip the return handler */

	atomic_long_inc(&stat_closes);
	inst->path = file->f_path;
	/* The caller's reference keeps the file and its path alive here. */
	path_get(&inst->path);
	inst->last_ref = (file_count(file) == 1);
	if (inst->last_ref)
		atomic_long_inc(&stat_last_ref_closes);
	atomic_long_inc(&stat_inflight);
	return 0;
}

static int khm_return(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct khm_inst *inst = (struct khm_inst *)ri->data;
	const struct path *path = &inst->path;

	atomic_long_dec(&stat_inflight);

	if (leak && inst->last_ref) {
		/* The vendor bug: path_put() saw a NULLed f_path. */
		atomic_long_inc(&stat_leaked);
		return 0;
	}

	if (!lockref_put_not_zero(&path->dentry->d_lockref)) {
		/* Ours would be the last dentry reference: dput() may sleep. */
		khm_defer(path, true);
		return 0;
	}

	if (khm_mntput_inline_ok(path, inst->last_ref)) {
		mntput(path->mnt);
		atomic_long_inc(&stat_put_atomic);
	} else {
		khm_defer(path, false);
	}
	return 0;
}

static struct kretprobe khm_krp = {
	.entry_handler	= khm_entry,
	.handler	= khm_return,
	.data_size	= sizeof(struct khm_inst),
};

static int khm_show(struct seq_file *m, void *v)
{
	seq_printf(m, "closes %ld\n", atomic_long_read(&stat_closes));
	seq_printf(m, "last_ref_closes %ld\n", atomic_long_read(&stat_last_ref_closes));
	seq_printf(m, "leaked %ld\n", atomic_long_read(&stat_leaked));
	seq_printf(m, "put_atomic %ld\n", atomic_long_read(&stat_put_atomic));
	seq_printf(m, "put_deferred %ld\n", atomic_long_read(&stat_put_deferred));
	seq_printf(m, "put_lost %ld\n", atomic_long_read(&stat_put_lost));
	seq_printf(m, "inflight %ld\n", atomic_long_read(&stat_inflight));
	seq_printf(m, "missed %d\n", READ_ONCE(khm_krp.nmissed));
	seq_printf(m, "leak %d\n", leak);
	return 0;
}

static int __init khm_init(void)
{
	int ret;

	if (leak != 0 && leak != 1) {
		pr_err("khm: leak must be 0 or 1 (got %d)\n", leak);
		return -EINVAL;
	}

	khm_pool = mempool_create_kmalloc_pool(KHM_POOL_RESERVE,
					       sizeof(struct khm_deferred));
	if (!khm_pool)
		return -ENOMEM;

	khm_wq = alloc_workqueue("khm", WQ_UNBOUND | WQ_MEM_RECLAIM, 0);
	if (!khm_wq) {
		ret = -ENOMEM;
		goto err_pool;
	}

	khm_proc = proc_create_single("khm", 0444, NULL, khm_show);
	if (!khm_proc) {
		ret = -ENOMEM;
		goto err_wq;
	}

	khm_krp.kp.symbol_name = symbol;
	khm_krp.maxactive = 64 * num_possible_cpus();
	ret = register_kretprobe(&khm_krp);
	if (ret < 0) {
		pr_err("khm: register_kretprobe(%s) failed: %d\n", symbol, ret);
		goto err_proc;
	}

	pr_info("khm: hooked %s (leak=%d, maxactive=%d)\n",
		symbol, leak, khm_krp.maxactive);
	return 0;

err_proc:
	proc_remove(khm_proc);
err_wq:
	destroy_workqueue(khm_wq);
err_pool:
	mempool_destroy(khm_pool);
	return ret;
}

static void __exit khm_exit(void)
{
	long inflight;

	/* Waits for running handlers; no new ones start afterwards. */
	unregister_kretprobe(&khm_krp);
	/* destroy_workqueue() drains all queued deferred puts. */
	destroy_workqueue(khm_wq);
	mempool_destroy(khm_pool);
	proc_remove(khm_proc);

	inflight = atomic_long_read(&stat_inflight);
	if (inflight)
		pr_warn("khm: %ld filp_close calls were in flight at unload; their path references are not dropped\n",
			inflight);
	pr_info("khm: unloaded: closes=%ld last_ref=%ld leaked=%ld put_atomic=%ld put_deferred=%ld put_lost=%ld missed=%d\n",
		atomic_long_read(&stat_closes),
		atomic_long_read(&stat_last_ref_closes),
		atomic_long_read(&stat_leaked),
		atomic_long_read(&stat_put_atomic),
		atomic_long_read(&stat_put_deferred),
		atomic_long_read(&stat_put_lost),
		khm_krp.nmissed);
}

module_init(khm_init);
module_exit(khm_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Emulated vendor close-hook path reference leak (kretprobe on filp_close)");
MODULE_AUTHOR("kernlab");
