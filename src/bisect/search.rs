//! The search itself, pure: given what is known of each candidate, which one
//! to test next, or where the first bad one is. The candidates are in order
//! from just after the known-good end to the known-bad end (the last one),
//! like `git rev-list --reverse good..bad`; the known-good end is not among
//! them. Skipped candidates are handled as `git bisect skip` does: a skipped
//! midpoint gives way to its nearest untested neighbour, and when only
//! skipped candidates are left between the last good and the first bad, the
//! answer is the range they span.

use serde::Serialize;

/// What a step found for one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Mark {
    /// Not tested yet.
    Untested,
    /// The lab's expectation held.
    Good,
    /// The verdict differed from the expectation.
    Bad,
    /// No usable verdict (inconclusive, infrastructure, does not build).
    Skip,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Test the candidate at this index.
    Test(usize),
    /// The first bad candidate is this one.
    Found(usize),
    /// Skipped candidates hide it: the first bad one is in `first..=last`
    /// (every candidate in it but `last` skipped; `last` is bad).
    Undecided { first: usize, last: usize },
}

/// The next step of a bisection over `marks` (one per candidate, in order;
/// the last is taken as bad whatever it says, as the known-bad end). A good
/// mark after the first bad one (a flaky or non-monotonic history) is
/// ignored: the search looks for the first bad after the last good before it.
pub fn next(marks: &[Mark]) -> Next {
    assert!(!marks.is_empty(), "a bisection has at least the known-bad candidate");
    let n = marks.len();
    let hi = marks.iter().position(|m| *m == Mark::Bad).unwrap_or(n - 1);
    // `lo` is one past the last good below `hi`: the first candidate that may be bad.
    let lo = marks[..hi].iter().rposition(|m| *m == Mark::Good).map_or(0, |g| g + 1);
    let open: Vec<usize> = (lo..hi).filter(|&i| marks[i] == Mark::Untested).collect();
    if open.is_empty() {
        return if lo == hi { Next::Found(hi) } else { Next::Undecided { first: lo, last: hi } };
    }
    // The midpoint of the interval that may hold the boundary: lo..=hi has
    // hi - lo + 1 candidates, the last of them known bad.
    let mid = lo + (hi - lo) / 2;
    if marks[mid] == Mark::Untested {
        return Next::Test(mid);
    }
    // Nearest untested neighbour, below first on a tie (it halves at least as well).
    let pick = open.iter().copied().min_by_key(|&i| (i.abs_diff(mid), i > mid)).expect("open is not empty");
    Next::Test(pick)
}

#[cfg(test)]
mod tests {
    use super::Mark::*;
    use super::*;

    /// Runs the search against a history whose first bad is `first_bad`,
    /// with `skipped` giving no verdict; returns the answer and the indices
    /// tested.
    fn simulate(n: usize, first_bad: usize, skipped: &[usize]) -> (Next, Vec<usize>) {
        let mut marks = vec![Untested; n];
        let mut tested = Vec::new();
        loop {
            match next(&marks) {
                Next::Test(i) => {
                    assert_eq!(marks[i], Untested, "tested {i} twice");
                    tested.push(i);
                    marks[i] = if skipped.contains(&i) {
                        Skip
                    } else if i >= first_bad {
                        Bad
                    } else {
                        Good
                    };
                }
                done => return (done, tested),
            }
        }
    }

    #[test]
    fn only_the_bad_end_is_the_answer_without_a_test() {
        assert_eq!(next(&[Untested]), Next::Found(0));
        assert_eq!(next(&[Bad]), Next::Found(0));
    }

    #[test]
    fn adjacent_good_and_bad() {
        assert_eq!(next(&[Good, Bad]), Next::Found(1));
        assert_eq!(next(&[Good, Good, Bad, Untested]), Next::Found(2));
        assert_eq!(next(&[Bad, Untested]), Next::Found(0));
    }

    #[test]
    fn finds_every_boundary_in_logarithmic_steps() {
        for n in 1..40 {
            for first_bad in 0..n {
                let (r, tested) = simulate(n, first_bad, &[]);
                assert_eq!(r, Next::Found(first_bad), "n={n} first_bad={first_bad}");
                let bound = (n as f64).log2().ceil() as usize;
                assert!(tested.len() <= bound, "n={n} first_bad={first_bad}: {} steps {tested:?}", tested.len());
            }
        }
    }

    #[test]
    fn first_step_is_the_midpoint() {
        assert_eq!(next(&[Untested; 4]), Next::Test(1));
        assert_eq!(next(&[Untested; 5]), Next::Test(2));
    }

    #[test]
    fn a_skipped_midpoint_gives_way_to_its_nearest_neighbour() {
        assert_eq!(next(&[Untested, Untested, Skip, Untested, Untested]), Next::Test(1));
        assert_eq!(next(&[Skip, Skip, Skip, Untested, Untested]), Next::Test(3));
        let (r, tested) = simulate(9, 6, &[4]);
        assert_eq!(r, Next::Found(6));
        assert!(!tested.contains(&8), "the bad end is never tested: {tested:?}");
    }

    #[test]
    fn all_skipped_gives_the_whole_range() {
        let (r, tested) = simulate(5, 3, &[0, 1, 2, 3]);
        assert_eq!(r, Next::Undecided { first: 0, last: 4 });
        assert_eq!(tested.len(), 4);
    }

    #[test]
    fn skips_next_to_the_boundary() {
        // The first bad itself skipped: the range is it and the next bad.
        let (r, _) = simulate(8, 3, &[3]);
        assert_eq!(r, Next::Undecided { first: 3, last: 4 });
        // The last good skipped: the range starts after the last known good.
        let (r, _) = simulate(8, 3, &[2]);
        assert_eq!(r, Next::Undecided { first: 2, last: 3 });
        // A skip away from the boundary changes nothing.
        let (r, _) = simulate(8, 3, &[6]);
        assert_eq!(r, Next::Found(3));
        // Skipped just before the bad end.
        assert_eq!(next(&[Good, Skip, Bad]), Next::Undecided { first: 1, last: 2 });
    }

    #[test]
    fn a_good_after_a_bad_is_ignored() {
        assert_eq!(next(&[Good, Bad, Good, Bad]), Next::Found(1));
    }

    #[test]
    fn any_skip_pattern_ends_with_an_answer_that_holds() {
        // Exhaustive over small histories: the answer contains the true first bad.
        for n in 1..9usize {
            for first_bad in 0..n {
                for mask in 0..(1u32 << (n - 1)) {
                    let skipped: Vec<usize> = (0..n - 1).filter(|i| mask & (1 << i) != 0).collect();
                    let (r, _) = simulate(n, first_bad, &skipped);
                    match r {
                        Next::Found(i) => assert_eq!(i, first_bad, "n={n} fb={first_bad} skip={skipped:?}"),
                        Next::Undecided { first, last } => {
                            assert!(first <= first_bad && first_bad <= last, "n={n} fb={first_bad} skip={skipped:?}: {first}..={last}");
                            assert!((first..last).all(|i| skipped.contains(&i)));
                        }
                        Next::Test(_) => unreachable!(),
                    }
                }
            }
        }
    }
}
