//! Double-buffered streaming: a reader thread fills one batch buffer while
//! the caller's thread consumes the other.
//!
//! Contract: exactly the two buffers given are ever allocated, so the memory
//! held by batches is at most twice the larger of them, whatever the number
//! of batches. Buffers go back to the reader after use and keep their
//! allocations, so steady-state reading touches no fresh pages. Batches are
//! consumed in order. The first error, from either side, stops both and is
//! returned; the reader never runs ahead by more than one batch.

use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Run `fill` on a reader thread and `consume` on this one.
///
/// `fill(buf)` reads the next batch into `buf` and returns `Ok(false)` when
/// the source is exhausted (then `buf` is not consumed). `consume(buf)`
/// scores it. Returns the time spent inside `fill` (the read time).
pub fn double_buffered<B, F, C>(bufs: [B; 2], mut fill: F, mut consume: C) -> Result<Duration>
where
    B: Send,
    F: FnMut(&mut B) -> Result<bool> + Send,
    C: FnMut(&mut B) -> Result<()>,
{
    std::thread::scope(|scope| {
        // Both channels hold at most the two buffers, so no send blocks.
        let (full_tx, full_rx) = sync_channel::<Result<B>>(2);
        let (free_tx, free_rx) = sync_channel::<B>(2);
        for b in bufs {
            // Cannot fail: the receiver is alive and there is room for two.
            let _ = free_tx.send(b);
        }
        let reader = scope.spawn(move || {
            let mut read = Duration::ZERO;
            // `recv` fails once the consumer has stopped (and dropped `free_tx`).
            while let Ok(mut buf) = free_rx.recv() {
                let t = Instant::now();
                let r = fill(&mut buf);
                read += t.elapsed();
                match r {
                    Ok(true) => {
                        if full_tx.send(Ok(buf)).is_err() {
                            break;
                        }
                    }
                    Ok(false) => break,
                    Err(e) => {
                        let _ = full_tx.send(Err(e));
                        break;
                    }
                }
            }
            read
        });
        let mut outcome = Ok(());
        for msg in full_rx.iter() {
            let step = msg.and_then(|mut buf| {
                consume(&mut buf)?;
                // The reader may have finished already; then the buffer is dropped.
                let _ = free_tx.send(buf);
                Ok(())
            });
            if let Err(e) = step {
                outcome = Err(e);
                break;
            }
        }
        // Stop the reader if it is waiting for a buffer.
        drop(free_tx);
        drop(full_rx);
        let read = reader
            .join()
            .map_err(|_| Error::Internal("the reader thread panicked".into()))?;
        outcome.map(|()| read)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn consumes_every_batch_in_order_with_two_buffers() {
        let allocs = AtomicUsize::new(0);
        let mut next = 0u32;
        let mut seen = Vec::new();
        double_buffered(
            [Vec::<u32>::new(), Vec::new()],
            |buf| {
                if next == 7 {
                    return Ok(false);
                }
                if buf.capacity() == 0 {
                    allocs.fetch_add(1, Ordering::Relaxed);
                }
                buf.clear();
                buf.extend([next, next * 10]);
                buf.reserve(16);
                next += 1;
                Ok(true)
            },
            |buf| {
                seen.push(buf.clone());
                Ok(())
            },
        )
        .unwrap();
        let want: Vec<Vec<u32>> = (0..7).map(|i| vec![i, i * 10]).collect();
        assert_eq!(seen, want);
        // Only the two buffers were ever grown from empty.
        assert_eq!(allocs.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn reader_error_stops_and_is_returned() {
        let mut n = 0;
        let mut consumed = 0;
        let e = double_buffered(
            [0u8, 0u8],
            |_| {
                n += 1;
                if n == 3 {
                    Err(Error::Usage("bad batch 3".into()))
                } else {
                    Ok(true)
                }
            },
            |_| {
                consumed += 1;
                Ok(())
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("bad batch 3"), "{e}");
        assert_eq!(consumed, 2);
    }

    #[test]
    fn consumer_error_stops_the_reader() {
        let mut filled = 0usize;
        let e = double_buffered(
            [0u8, 0u8],
            |_| {
                filled += 1;
                Ok(filled < 1_000_000)
            },
            |_| Err(Error::Usage("scoring failed".into())),
        )
        .unwrap_err();
        assert!(e.to_string().contains("scoring failed"));
        // It stopped long before the source was exhausted.
        assert!(filled <= 3, "{filled}");
    }
}
