//! A pure step over many items, split over two threads when there are
//! enough of them: a full sync's plans and rendered ports at thousands of
//! Services. The proxy runs on one thread; during a cold start the API
//! server sits nearly idle once it has sent its lists (measured: under a
//! tenth of a core), so the second core is free for half of the work.
//! Below [`PARALLEL_FROM`] items the thread's start costs more than it
//! saves, and a single core runs everything on the caller's thread.

/// The fewest items worth a second thread.
pub const PARALLEL_FROM: usize = 2_000;

/// `f` of every item, in order; the second half on a scoped thread when
/// `items` holds at least [`PARALLEL_FROM`] and the machine two cores.
pub fn map_halves<T, R, F>(items: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    if items.len() < PARALLEL_FROM || !two_cores() {
        return items.iter().map(&f).collect();
    }
    let (first, second) = items.split_at(items.len() / 2);
    std::thread::scope(|scope| {
        let f = &f;
        let other = std::thread::Builder::new()
            .name("weft-halves".into())
            .spawn_scoped(scope, move || second.iter().map(f).collect::<Vec<R>>());
        let mut out: Vec<R> = first.iter().map(f).collect();
        match other {
            Ok(handle) => match handle.join() {
                Ok(rest) => out.extend(rest),
                // the step is pure: a panic there is a bug, raised here
                Err(panic) => std::panic::resume_unwind(panic),
            },
            // no thread to be had (limits): this one does both halves
            Err(_) => out.extend(second.iter().map(f)),
        }
        out
    })
}

fn two_cores() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() > 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_halves_come_back_in_order_whatever_the_size() {
        for n in [
            0,
            1,
            PARALLEL_FROM - 1,
            PARALLEL_FROM,
            PARALLEL_FROM * 3 + 1,
        ] {
            let items: Vec<usize> = (0..n).collect();
            let out = map_halves(&items, |i| i * 2);
            assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>(), "{n}");
        }
    }
}
