//! Work spread over the machine's cores with the order kept: inputs are cut
//! into contiguous runs, one thread a run, and the results are joined back
//! in input order, so what a parallel load produces (objects, errors and
//! their order) is byte for byte what a sequential one does.

/// `f` of every item, in the order of `items`, computed on up to as many
/// threads as there are cores; sequentially when `items` is short.
pub(crate) fn map_in_order<T, R, F>(items: Vec<T>, sequential_below: usize, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
{
    let runs = fold_in_order(items, sequential_below, Vec::new, |out, item| {
        out.push(f(item));
    });
    if runs.len() == 1 {
        return runs.into_iter().flatten().collect();
    }
    let mut all = Vec::with_capacity(runs.iter().map(Vec::len).sum());
    for run in runs {
        all.extend(run);
    }
    all
}

/// Every item folded by `step` into the accumulator of its run (a
/// contiguous run of `items` per thread, each accumulator from `init`); the
/// accumulators in input order. One accumulator per thread, not one result
/// per item: for 300,000 objects, per-item results cost a small allocation
/// each and a copy of everything when joined.
pub(crate) fn fold_in_order<T, A, I, F>(
    items: Vec<T>,
    sequential_below: usize,
    init: I,
    step: F,
) -> Vec<A>
where
    T: Send,
    A: Send,
    I: Fn() -> A + Sync,
    F: Fn(&mut A, T) + Sync,
{
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if threads < 2 || items.len() < sequential_below.max(2) {
        let mut all = init();
        for item in items {
            step(&mut all, item);
        }
        return vec![all];
    }
    let run = items.len().div_ceil(threads);
    let mut runs: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut rest = items.into_iter();
    loop {
        let next: Vec<T> = rest.by_ref().take(run).collect();
        if next.is_empty() {
            break;
        }
        runs.push(next);
    }
    let (init, step) = (&init, &step);
    std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .into_iter()
            .map(|run| {
                scope.spawn(move || {
                    let mut acc = init();
                    for item in run {
                        step(&mut acc, item);
                    }
                    acc
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(acc) => acc,
                // A panic in a worker is a bug; carry it to the caller as
                // a panic, as a sequential map would.
                Err(payload) => std::panic::resume_unwind(payload),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_input_order() {
        let items: Vec<u32> = (0..1000).collect();
        let doubled = map_in_order(items, 1, |i| i * 2);
        assert_eq!(doubled, (0..1000).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(map_in_order(Vec::<u32>::new(), 1, |i| i), Vec::<u32>::new());
        assert_eq!(map_in_order(vec![7], 1, |i| i + 1), vec![8]);
    }

    #[test]
    fn folds_keep_the_input_order_across_runs() {
        let items: Vec<u32> = (0..1001).collect();
        let runs = fold_in_order(items, 1, Vec::new, |out: &mut Vec<u32>, i| out.push(i));
        assert!(!runs.is_empty());
        assert_eq!(runs.concat(), (0..1001).collect::<Vec<_>>());
        let sequential = fold_in_order((0..10).collect(), 100, || 0, |sum: &mut u32, i| *sum += i);
        assert_eq!(sequential, vec![45]);
    }
}
