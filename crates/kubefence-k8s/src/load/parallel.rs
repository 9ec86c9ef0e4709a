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
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if threads < 2 || items.len() < sequential_below.max(2) {
        return items.into_iter().map(f).collect();
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
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .into_iter()
            .map(|run| scope.spawn(move || run.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(results) => results,
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
}
