//! The holders of a reference leak: which module function took the
//! references on VFS objects (dentries, mounts, inodes, files) that nobody
//! dropped.
//!
//! Method: one trace event per VFS reference primitive a module can call
//! (`path_get`, `dput`, `mntput`, `iput`, `fput`, …), each with a hist
//! trigger keyed by the call stack, so the kernel itself counts the calls
//! per distinct stack (no ring buffer, nothing lost while the stacks fit the
//! table). Where the kernel has fprobe events (6.5 and later, `f:` in
//! `dynamic_events`) they are used, else kprobe events: kprobes do not nest,
//! so a kprobe event misses the calls made inside another kprobe's handler
//! (a module hooking the kernel through kprobes), and the profile's missed
//! count says how many; fprobes do not have that limit.
//!
//! The reading keeps the stacks that hold a frame of a loaded module, and
//! attributes each call to the innermost module frame (the module function
//! that called into the VFS). A call made beneath another probed primitive
//! (`dput` inside `path_put`) is not counted twice: only the outermost
//! probed function below the module frame counts. Per module and kind of
//! object, the references still held are gets − puts, module arm minus
//! baseline; they are shared among the module's functions that took that
//! kind of reference, in proportion to their gets in the module arm.
//!
//! Not seen: primitives the kernel cannot trace (the `lockref_*` functions
//! behind the inline `dget` and `dput`'s fast path are `notrace` on Debian's
//! 6.1 and 6.12), references taken inline (`get_file`, `dget_dlock`), and a
//! module frame deeper than the stack the hist keeps (16 frames).

use std::collections::{BTreeMap, BTreeSet};

use super::{Role, Site};

/// The trace event group of the probes.
const GROUP: &str = "kernlab";
/// Entries of each hist table (distinct stacks per primitive).
const HIST_SIZE: u32 = 4096;
/// First line of the collected text; the reading checks it.
const MAGIC: &str = "# kernlab-holders 1";

/// A kind of reference-counted object, and the slab cache its objects live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Obj {
    Dentry,
    Mount,
    Inode,
    File,
}

impl Obj {
    fn cache(self) -> &'static str {
        match self {
            Obj::Dentry => "dentry",
            Obj::Mount => "mnt_cache",
            // The file system's own inode cache (shmem_inode_cache,
            // ext4_inode_cache, …): the primitive does not say which.
            Obj::Inode => "inode",
            Obj::File => "filp",
        }
    }
}

/// The probed primitives: name, and what one call does (+1 get, −1 put) to
/// which kinds. `path_*` move a dentry and a mount reference together.
const PRIMITIVES: &[(&str, i64, &[Obj])] = &[
    ("path_get", 1, &[Obj::Dentry, Obj::Mount]),
    ("path_put", -1, &[Obj::Dentry, Obj::Mount]),
    ("dget_parent", 1, &[Obj::Dentry]),
    ("dput", -1, &[Obj::Dentry]),
    ("mntget", 1, &[Obj::Mount]),
    ("mntput", -1, &[Obj::Mount]),
    ("ihold", 1, &[Obj::Inode]),
    ("igrab", 1, &[Obj::Inode]),
    ("iput", -1, &[Obj::Inode]),
    ("fget", 1, &[Obj::File]),
    ("fget_raw", 1, &[Obj::File]),
    ("fget_task", 1, &[Obj::File]),
    ("fput", -1, &[Obj::File]),
];

fn primitive(name: &str) -> Option<(i64, &'static [Obj])> {
    PRIMITIVES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, sign, objs)| (*sign, *objs))
}

/// Shell prelude: find (or mount) tracefs into `$T`.
const FIND_TRACEFS: &str = r#"T=/sys/kernel/tracing
[ -e "$T/kprobe_events" ] || mount -t tracefs nodev "$T" 2>/dev/null
if [ ! -e "$T/kprobe_events" ]; then
  [ -e /sys/kernel/debug/tracing/kprobe_events ] || mount -t debugfs nodev /sys/kernel/debug 2>/dev/null
  T=/sys/kernel/debug/tracing
fi
"#;

/// The guest script that defines the probes: run once as root before the
/// lab's modules are loaded. POSIX sh (busybox or bash). Exits 1 with one
/// line on stderr when the kernel cannot do it; prints one line on stdout
/// saying what it set up.
pub fn setup_script() -> String {
    let names: Vec<&str> = PRIMITIVES.iter().map(|(n, _, _)| *n).collect();
    format!(
        r#"#!/bin/sh
# kernlab holders: trace events on the VFS reference primitives, each with a
# hist trigger keyed by the call stack.
{FIND_TRACEFS}[ -e "$T/kprobe_events" ] || {{ echo "kernlab holders: the kernel has no kprobe events (no kprobe_events in tracefs or debugfs)" >&2; exit 1; }}
D="$T/kprobe_events"
[ -e "$T/dynamic_events" ] && D="$T/dynamic_events"
# fprobe events (6.5+) see calls made inside kprobe handlers; kprobe events
# miss them.
mode=p
if [ "$D" = "$T/dynamic_events" ] && echo "f:{GROUP}/holders_test path_get" >> "$D" 2>/dev/null; then
  echo "-:{GROUP}/holders_test" >> "$D"
  mode=f
fi
key=
made=
for f in {names}; do
  echo "$mode:{GROUP}/$f $f" >> "$D" 2>/dev/null || continue
  E="$T/events/{GROUP}/$f"
  if [ -z "$key" ]; then
    for k in stacktrace common_stacktrace; do
      if echo "hist:keys=$k:vals=hitcount:sort=hitcount:size={HIST_SIZE}" > "$E/trigger" 2>/dev/null; then key=$k; break; fi
    done
    [ -n "$key" ] || {{ echo "kernlab holders: hist triggers keyed by stacktrace are not available (CONFIG_HIST_TRIGGERS?)" >&2; exit 1; }}
  else
    echo "hist:keys=$key:vals=hitcount:sort=hitcount:size={HIST_SIZE}" > "$E/trigger" || {{ echo "kernlab holders: cannot add the hist trigger of $f" >&2; exit 1; }}
  fi
  echo 1 > "$E/enable" || {{ echo "kernlab holders: cannot enable the event of $f" >&2; exit 1; }}
  made="$made $f"
done
[ -n "$made" ] || {{ echo "kernlab holders: no reference primitive could be probed ({names})" >&2; exit 1; }}
echo "$mode" > /run/kernlab-holders.mode
echo "kernlab holders: $mode events on$made"
"#,
        names = names.join(" "),
    )
}

/// The guest script that prints what the reading needs, after the workload
/// (modules still loaded): the mode, the kprobe profile (hits and misses),
/// and each probe's hist, in sections `== NAME`.
pub fn collect_script() -> String {
    format!(
        r#"#!/bin/sh
{FIND_TRACEFS}echo "{MAGIC}"
echo "== kernel $(uname -r)"
echo "== mode $(cat /run/kernlab-holders.mode 2>/dev/null || echo none)"
echo "== profile"
cat "$T/kprobe_profile" 2>/dev/null
for E in "$T"/events/{GROUP}/*/; do
  [ -e "$E/hist" ] || continue
  echo "== hist $(basename "$E")"
  cat "$E/hist"
done
echo "== end"
"#
    )
}

/// What the reading found: the sites, and what was probed and seen (or why
/// nothing could be named), in words for the report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Holders {
    pub sites: Vec<Site>,
    pub tried: Vec<String>,
}

/// One arm's collected text, read.
#[derive(Debug, Default)]
struct Arm {
    mode: String,
    kernel: String,
    /// Probe → (hits, misses) from the kprobe profile.
    profile: BTreeMap<String, (u64, u64)>,
    hists: BTreeMap<String, Hist>,
}

#[derive(Debug, Default)]
struct Hist {
    /// Stacks, innermost frame first, with their hit counts.
    stacks: Vec<(Vec<String>, u64)>,
    hits: u64,
    dropped: u64,
}

fn parse_arm(text: &str) -> Result<Arm, String> {
    let mut lines = text.lines().skip_while(|l| l.trim() != MAGIC);
    if lines.next().is_none() {
        return Err(format!("no `{MAGIC}` line: the collect script did not run"));
    }
    let mut arm = Arm::default();
    let mut section = String::new();
    let mut frames: Option<Vec<String>> = None;
    let mut ended = false;
    for line in lines {
        if let Some(rest) = line.strip_prefix("== ") {
            section = rest.trim().to_string();
            if let Some(k) = section.strip_prefix("kernel ") {
                arm.kernel = k.to_string();
            } else if let Some(m) = section.strip_prefix("mode ") {
                arm.mode = m.to_string();
            } else if let Some(h) = section.strip_prefix("hist ") {
                arm.hists.insert(h.to_string(), Hist::default());
            } else if section == "end" {
                ended = true;
            }
            frames = None;
            continue;
        }
        if section == "profile" {
            let w: Vec<&str> = line.split_whitespace().collect();
            if let [name, hits, missed] = w[..] {
                if let (Ok(h), Ok(m)) = (hits.parse(), missed.parse()) {
                    let name = name.rsplit('/').next().unwrap_or(name);
                    arm.profile.insert(name.to_string(), (h, m));
                }
            }
            continue;
        }
        let Some(h) = section.strip_prefix("hist ") else { continue };
        let hist = arm.hists.get_mut(h).expect("inserted at the section line");
        let t = line.trim();
        if t.starts_with("{ ") && t.contains("stacktrace:") {
            frames = Some(Vec::new());
        } else if let Some(rest) = t.strip_prefix("} hitcount:") {
            let n = rest.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
            hist.stacks.push((frames.take().unwrap_or_default(), n));
        } else if let Some(fs) = frames.as_mut() {
            if !t.is_empty() {
                fs.push(t.to_string());
            }
        } else if let Some(n) = t.strip_prefix("Hits:") {
            hist.hits = n.trim().parse().unwrap_or(0);
        } else if let Some(n) = t.strip_prefix("Dropped:") {
            hist.dropped = n.trim().parse().unwrap_or(0);
        }
    }
    if !ended {
        return Err("the collected text stops before `== end` (cut off)".into());
    }
    Ok(arm)
}

/// `khm_entry+0x2c/0x80 [khm]` → (`khm_entry`, Some(`khm`)); a bare
/// address → (`0xffff…`, None).
fn frame(text: &str) -> (&str, Option<&str>) {
    let (sym, module) = match text.rsplit_once(" [") {
        Some((s, m)) => (s, m.strip_suffix(']')),
        None => (text, None),
    };
    let func = sym.split('+').next().unwrap_or(sym).trim();
    (func, module)
}

/// Per module function: the references it took and dropped, per kind.
#[derive(Debug, Default, Clone)]
struct Counts {
    gets: BTreeMap<Obj, u64>,
    puts: BTreeMap<Obj, u64>,
    /// The get stacks seen, for the report (most frequent first).
    stacks: BTreeMap<Vec<String>, u64>,
}

/// (module, function) → counts, plus calls seen without a module frame
/// and calls counted under an outer primitive.
#[derive(Debug, Default)]
struct Tally {
    by_site: BTreeMap<(String, String), Counts>,
    nested: u64,
}

fn tally(arm: &Arm) -> Tally {
    let mut t = Tally::default();
    for (prim, hist) in &arm.hists {
        let Some((sign, objs)) = primitive(prim) else { continue };
        for (frames, n) in &hist.stacks {
            let parsed: Vec<(&str, Option<&str>)> = frames.iter().map(|f| frame(f)).collect();
            let Some(m) = parsed.iter().position(|(_, module)| module.is_some()) else {
                continue;
            };
            // The probed function's own frame (kprobe and fprobe stacks show
            // it below the tracing frames), then its callers up to the module.
            let own = parsed[..m].iter().position(|(f, _)| f == prim).map_or(0, |i| i + 1);
            if parsed[own..m].iter().any(|(f, _)| primitive(f).is_some()) {
                t.nested += n;
                continue;
            }
            let (func, module) = parsed[m];
            let c = t
                .by_site
                .entry((module.unwrap_or_default().to_string(), func.to_string()))
                .or_default();
            for o in objs {
                let slot = if sign > 0 { &mut c.gets } else { &mut c.puts };
                *slot.entry(*o).or_default() += n;
            }
            if sign > 0 {
                let stack = std::iter::once(format!("{prim} [vmlinux]"))
                    .chain(parsed[own..=m].iter().map(|(f, module)| {
                        format!("{f} [{}]", module.unwrap_or("vmlinux"))
                    }))
                    .collect();
                *c.stacks.entry(stack).or_default() += n;
            }
        }
    }
    t
}

/// Per module and kind: (gets, puts) summed over the module's functions.
fn balances(t: &Tally) -> BTreeMap<(String, Obj), (u64, u64)> {
    let mut b: BTreeMap<(String, Obj), (u64, u64)> = BTreeMap::new();
    for ((module, _), c) in &t.by_site {
        for (o, n) in &c.gets {
            b.entry((module.clone(), *o)).or_default().0 += n;
        }
        for (o, n) in &c.puts {
            b.entry((module.clone(), *o)).or_default().1 += n;
        }
    }
    b
}

/// The least a site must hold beyond the baseline to be named: a few
/// references in flight at the end of either arm are not a leak.
fn floor(gets: u64) -> i64 {
    8.max((gets / 1000) as i64)
}

/// Reads the two arms' collected text (module arm, baseline) into the
/// functions holding references the module arm never dropped.
pub fn holders(module_arm: &str, baseline_arm: &str) -> Holders {
    let mut out = Holders::default();
    let (arm, base) = match (parse_arm(module_arm), parse_arm(baseline_arm)) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            for (which, r) in [("module arm", a.err()), ("baseline", b.err())] {
                if let Some(e) = r {
                    out.tried.push(format!("holders: {which}: {e}"));
                }
            }
            return out;
        }
    };
    let probed: BTreeSet<&String> = arm.hists.keys().collect();
    out.tried.push(format!(
        "holders: {} events with stack hists on {} ({})",
        match arm.mode.as_str() {
            "f" => "fprobe",
            "p" => "kprobe",
            _ => "no",
        },
        probed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
        arm.kernel
    ));
    for (which, a) in [("module arm", &arm), ("baseline", &base)] {
        let dropped: Vec<String> = a
            .hists
            .iter()
            .filter(|(_, h)| h.dropped > 0)
            .map(|(p, h)| format!("{p} {}", h.dropped))
            .collect();
        if !dropped.is_empty() {
            out.tried.push(format!(
                "holders: {which}: hist tables full, stacks dropped (counts are low): {}",
                dropped.join(", ")
            ));
        }
        let missed: Vec<String> = a
            .profile
            .iter()
            .filter(|(_, (_, m))| *m > 0)
            .map(|(p, (h, m))| format!("{p} {m} of {}", h + m))
            .collect();
        if !missed.is_empty() {
            out.tried.push(format!(
                "holders: {which}: calls missed because they ran inside another kprobe's handler \
                 (kprobes do not nest; a module hooking through kprobes takes or drops references \
                 there, and kprobe events cannot see which function): {}",
                missed.join(", ")
            ));
        }
    }
    let (ta, tb) = (tally(&arm), tally(&base));
    let (ba, bb) = (balances(&ta), balances(&tb));
    let keys: BTreeSet<&(String, Obj)> = ba.keys().chain(bb.keys()).collect();
    // Per module and kind: references held beyond the baseline.
    let mut held: BTreeMap<(String, Obj), i64> = BTreeMap::new();
    for k in keys {
        let (ga, pa) = ba.get(k).copied().unwrap_or_default();
        let (gb, pb) = bb.get(k).copied().unwrap_or_default();
        let d = (ga as i64 - pa as i64) - (gb as i64 - pb as i64);
        out.tried.push(format!(
            "holders: [{}] {} references: module arm gets {ga} puts {pa}, baseline gets {gb} puts {pb}, held beyond the baseline {d}",
            k.0,
            k.1.cache()
        ));
        held.insert(k.clone(), d);
    }
    // Share each module's held references among its get sites; a site that
    // takes paths (dentry and mount together) holds the larger half: the
    // other half's puts may have gone through a primitive nobody can trace
    // (`lockref_put_not_zero`, dput's fast path).
    for ((module, func), c) in &ta.by_site {
        let mut best: Option<(Obj, i64)> = None;
        for (o, g) in &c.gets {
            let total = ba.get(&(module.clone(), *o)).map_or(0, |x| x.0);
            let h = held.get(&(module.clone(), *o)).copied().unwrap_or(0);
            if total == 0 || h < floor(total) {
                continue;
            }
            let share = (h as f64 * *g as f64 / total as f64).round() as i64;
            let better = match best {
                None => true,
                Some((bo, bs)) => share > bs || (share == bs && *o < bo),
            };
            if better {
                best = Some((*o, share));
            }
        }
        let Some((o, objects)) = best else { continue };
        let o = if c.gets.contains_key(&Obj::Dentry) { Obj::Dentry } else { o };
        let stack = c
            .stacks
            .iter()
            .max_by_key(|(s, n)| (**n, std::cmp::Reverse((*s).clone())))
            .map(|(s, _)| s.clone())
            .unwrap_or_default();
        out.sites.push(Site {
            function: func.clone(),
            module: module.clone(),
            cache: o.cache().to_string(),
            objects,
            stack,
            role: Role::HoldsReferences,
        });
    }
    out.sites.sort_by(|a, b| b.objects.cmp(&a.objects).then(a.function.cmp(&b.function)));
    if ta.nested + tb.nested > 0 {
        out.tried.push(format!(
            "holders: calls beneath another probed primitive counted once, at the outer one: {} (module arm), {} (baseline)",
            ta.nested, tb.nested
        ));
    }
    if out.sites.is_empty() {
        out.tried.push(
            "holders: no module function holds references beyond the baseline on the probed primitives; \
             not seen: the lockref_* functions behind the inline dget()/dput() fast path (notrace), \
             references taken inline (get_file, dget_dlock), calls inside kprobe handlers on kernels \
             without fprobe events, module frames deeper than the 16 the stack hist keeps"
                .into(),
        );
    }
    out
}

#[cfg(test)]
#[path = "holders_tests.rs"]
mod tests;
