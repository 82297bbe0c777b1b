# kernlab's drgn triage: reads a vmcore with its debug vmlinux and prints
# one JSON document on stdout (the memory summary, every slab cache's
# counts, the panic message, the crashed task's stack, the log's tail).
# kernlab embeds this file and runs it with Debian's python3 (python3-drgn).
#
# usage: drgn_triage.py VMLINUX VMCORE
#
# Slab counts are read the way `crash`'s `kmem -s` reads a SLUB cache, from
# the allocator's own counters rather than by walking every page of memory
# (drgn's slab_cache_for_each_allocated_object walks all of memory once per
# cache): total = the nodes' total_objects; free = the free objects of the
# nodes' partial slabs, of each CPU's partial slabs and of each CPU's active
# slab (its lockless freelist plus what other CPUs freed into the slab).
# allocated = total - free.
import json
import re
import sys
import time

import drgn
from drgn import FaultError, cast
from drgn.helpers.linux.cpumask import for_each_possible_cpu
from drgn.helpers.linux.list import list_for_each_entry
from drgn.helpers.linux.percpu import per_cpu_ptr
from drgn.helpers.linux.slab import for_each_slab_cache

t0 = time.monotonic()
vmlinux, vmcore = sys.argv[1], sys.argv[2]
prog = drgn.Program()
prog.set_core_dump(vmcore)
prog.load_debug_info([vmlinux])
warnings = []


def map_kernel_image():
    """drgn 0.0.22 finds the page tables of a dump with a kimage_voffset in
    its vmcoreinfo (arm64) through the page tables themselves and fails
    ("recursive address translation"). The kernel image is mapped at a
    fixed offset from its physical address, so its virtual range is given
    to drgn as a segment read through that offset: swapper_pg_dir is in it,
    and the rest translates through the page tables as usual."""
    with open(vmcore, "rb") as f:
        head = f.read(4 << 20)
    m = re.search(rb"NUMBER\(kimage_voffset\)=(0x[0-9a-fA-F]+)", head)
    if not m:
        return
    voffset = int(m.group(1), 16)
    start = prog.symbol("_text").address
    end = prog.symbol("_end").address

    def read(address, count, offset, physical):
        return prog.read(address - voffset, count, True)

    prog.add_memory_segment(start, end - start, read, False)


map_kernel_image()


def page_size():
    try:
        return prog.constant("PAGE_SIZE").value_()
    except LookupError:
        pass
    try:
        return 1 << prog.constant("PAGE_SHIFT").value_()
    except LookupError:
        return 4096


PAGE = page_size()


def node_stat(name):
    try:
        return prog["vm_node_stat"][prog.constant(name)].counter.value_()
    except (LookupError, FaultError) as e:
        warnings.append(f"vm_node_stat {name}: {e}")
        return None


def zone_stat(name):
    try:
        return prog["vm_zone_stat"][prog.constant(name)].counter.value_()
    except (LookupError, FaultError) as e:
        warnings.append(f"vm_zone_stat {name}: {e}")
        return None


def memory():
    rows = []
    try:
        total = prog["_totalram_pages"].counter.value_()
    except LookupError:
        total = prog["totalram_pages"].value_()
    rows.append(["TOTAL MEM", total * PAGE])
    free = zone_stat("NR_FREE_PAGES")
    if free is not None:
        rows.append(["FREE", free * PAGE])
        rows.append(["USED", (total - free) * PAGE])
    # The _B counters are kept in pages per node (mm/vmstat.c).
    rec = node_stat("NR_SLAB_RECLAIMABLE_B")
    unrec = node_stat("NR_SLAB_UNRECLAIMABLE_B")
    if rec is not None and unrec is not None:
        rows.append(["SLAB", (rec + unrec) * PAGE])
    return rows


def freelist_len(cache, head, limit):
    """Objects on a SLUB freelist (pointers may be hardened: XORed with the
    cache's random and the pointer's byte-swapped address)."""
    offset = cache.offset.value_()
    try:
        rnd = cache.random.value_()
    except AttributeError:
        rnd = None
    n = 0
    ptr = head
    while ptr and n < limit:
        n += 1
        addr = ptr + offset
        ptr = prog.read_word(addr)
        if rnd is not None:
            ptr ^= rnd ^ int.from_bytes(addr.to_bytes(8, "little"), "big")
    return n


def slab_objects(slab):
    # struct slab (6.x) / struct page: objects:15, inuse:16 bitfields.
    return slab.objects.value_(), slab.inuse.value_()


def cache_counts(s, cpus, slab_type):
    total = 0
    free = 0
    try:
        nodes = prog["nr_node_ids"].value_()
    except KeyError:
        nodes = 1
    for nid in range(nodes):
        n = s.node[nid]
        if not n:
            continue
        total += n.total_objects.counter.value_()
        for slab in list_for_each_entry(slab_type.type, n.partial.address_of_(), "slab_list"):
            objects, inuse = slab_objects(slab)
            free += objects - inuse
    cpu_slab_attr = None
    for cpu in cpus:
        c = per_cpu_ptr(s.cpu_slab, cpu)
        if cpu_slab_attr is None:
            cpu_slab_attr = "slab" if hasattr(c, "slab") else "page"
        slab = getattr(c, cpu_slab_attr)
        if slab:
            slab = cast(slab_type, slab)
            objects, inuse = slab_objects(slab)
            free += objects - inuse
            free += freelist_len(s, c.freelist.value_(), objects)
        try:
            p = c.partial
        except AttributeError:
            p = None
        seen = 0
        while p and seen < 4096:
            p = cast(slab_type, p)
            objects, inuse = slab_objects(p)
            free += objects - inuse
            p = p.next
            seen += 1
    return total, max(total - free, 0)


def caches():
    try:
        slab_type = prog.type("struct slab *")
        slab_type.type.member("slab_list")
    except LookupError:
        slab_type = prog.type("struct page *")
    cpus = list(for_each_possible_cpu(prog))
    out = []
    for s in for_each_slab_cache(prog):
        name = s.name.string_().decode(errors="replace")
        try:
            total, allocated = cache_counts(s, cpus, slab_type)
        except (FaultError, LookupError, AttributeError) as e:
            warnings.append(f"cache {name}: {e}")
            continue
        out.append(
            {
                "name": name,
                "objsize": s.object_size.value_(),
                "size": s.size.value_(),
                "allocated": allocated,
                "total": total,
                # Objects in one slab (kmem_cache_order_objects: the low
                # 16 bits): how far a CPU's active slab can move a count.
                "per_slab": s.oo.x.value_() & 0xFFFF,
            }
        )
    return out


def log_tail(n):
    try:
        from drgn.helpers.linux.printk import get_dmesg

        lines = get_dmesg(prog).decode(errors="replace").splitlines()
    except Exception as e:  # noqa: BLE001 -- the log is a bonus
        warnings.append(f"log: {e}")
        return []
    return lines[-n:]


def crashed():
    try:
        thread = prog.crashed_thread()
        task = thread.object
        comm = task.comm.string_().decode(errors="replace")
        frames = []
        for f in thread.stack_trace():
            try:
                frames.append(f.name or hex(f.pc))
            except Exception:  # noqa: BLE001
                frames.append("?")
        return {"pid": thread.tid, "comm": comm, "stack": frames}
    except Exception as e:  # noqa: BLE001 -- the stack is a bonus
        warnings.append(f"crashed thread: {e}")
        return None


mem = memory()
cs = caches()
log = log_tail(400)
panic = None
for line in reversed(log):
    i = line.find("Kernel panic - not syncing:")
    if i >= 0:
        panic = line[i:].strip()
        break
task = crashed()
json.dump(
    {
        "drgn": drgn.__version__,
        "memory": mem,
        "caches": cs,
        "cpus": len(list(for_each_possible_cpu(prog))),
        "panic": panic,
        "task": task,
        "log": log[-40:],
        "warnings": warnings,
        "secs": time.monotonic() - t0,
    },
    sys.stdout,
)
