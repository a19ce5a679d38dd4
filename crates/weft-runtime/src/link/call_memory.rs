//! Memory for the future of a call into a provider, reused from one call to the
//! next in a store.
//!
//! With component-model async compiled in, Wasmtime's `Func::call_async` future
//! carries the concurrent path's state whether or not it is taken: ~1.4 KB, more
//! than glibc's per-thread cache serves (1,032 bytes). A dynamic hop made one
//! each call, inside the boxed future Wasmtime's `func_new_async` asks for; that
//! allocation alone made a WASI 0.2 `add` across a dynamic link ~1.25× slower
//! (docs/benchmarks.md). Here the future is written into a block the store keeps
//! and hands back when the call ends: one allocation per nesting depth per
//! store, instead of one per call.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// Bytes a block holds; a future that does not fit gets a box of its own.
const CAPACITY: usize = 2048;

#[repr(C, align(16))]
struct Block([MaybeUninit<u8>; CAPACITY]);

/// A block for one call's future at a time.
pub(crate) struct CallMemory(Box<Block>);

impl CallMemory {
    pub fn new() -> CallMemory {
        CallMemory(Box::new(Block([MaybeUninit::uninit(); CAPACITY])))
    }
}

/// A future placed in a [`CallMemory`] (or, if it does not fit, in a box);
/// resolves to its output and the memory, for the next call.
pub(crate) struct Placed<'a, F: Future> {
    memory: Option<CallMemory>,
    place: Place<F>,
    _borrows: PhantomData<&'a mut F>,
}

enum Place<F: Future> {
    /// In the block, not yet dropped.
    Block(NonNull<F>),
    Boxed(Pin<Box<F>>),
    /// Completed (and dropped).
    Done,
}

// SAFETY: `Placed` owns the `F` in its block exactly as a `Box<F>` would.
unsafe impl<F: Future + Send> Send for Placed<'_, F> {}

impl<'a, F: Future + 'a> Placed<'a, F> {
    pub fn new(mut memory: CallMemory, future: F) -> Placed<'a, F> {
        let fits = size_of::<F>() <= CAPACITY && align_of::<F>() <= align_of::<Block>();
        let place = if fits {
            let slot = NonNull::from(&mut *memory.0).cast::<F>();
            // SAFETY: the block is large and aligned enough for `F` (checked
            // above), and holds nothing: a `Placed` drops what it wrote before
            // it gives the memory back.
            unsafe { slot.write(future) };
            Place::Block(slot)
        } else {
            Place::Boxed(Box::pin(future))
        };
        Placed { memory: Some(memory), place, _borrows: PhantomData }
    }
}

impl<F: Future> Future for Placed<'_, F> {
    type Output = (F::Output, CallMemory);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `Placed` is `Unpin`: the future it polls lives on the heap and never moves.
        let this = self.get_mut();
        let polled = match &mut this.place {
            // SAFETY: the future stays at this address until it is dropped here
            // or in `drop`; nothing else reaches it.
            Place::Block(future) => unsafe { Pin::new_unchecked(future.as_mut()) }.poll(cx),
            Place::Boxed(future) => future.as_mut().poll(cx),
            Place::Done => panic!("a `Placed` future polled after it completed"),
        };
        let Poll::Ready(output) = polled else { return Poll::Pending };
        if let Place::Block(future) = std::mem::replace(&mut this.place, Place::Done) {
            // SAFETY: written in `new`, not dropped yet, and never used again.
            unsafe { future.as_ptr().drop_in_place() };
        }
        Poll::Ready((output, this.memory.take().expect("the memory is held until completion")))
    }
}

impl<F: Future> Unpin for Placed<'_, F> {}

impl<F: Future> Drop for Placed<'_, F> {
    fn drop(&mut self) {
        if let Place::Block(future) = self.place {
            // SAFETY: a call given up half-way (the caller's future dropped):
            // the future is dropped where it lies, before its memory is freed.
            unsafe { future.as_ptr().drop_in_place() };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Pending once, then ready: a future that really suspends.
    struct YieldOnce(bool);

    impl Future for YieldOnce {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if std::mem::replace(&mut self.0, true) {
                return Poll::Ready(());
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
        }
    }

    #[test]
    fn a_placed_future_runs_once_and_is_dropped_once_whether_it_completes_or_not() {
        let drops = Arc::new(AtomicUsize::new(0));
        let held = Counted(drops.clone());
        let (value, memory) = block_on(Placed::new(CallMemory::new(), async move {
            YieldOnce(false).await;
            let _held = held;
            7
        }));
        assert_eq!((value, drops.load(Ordering::SeqCst)), (7, 1));

        // Given up before completion, in reused memory.
        let held = Counted(drops.clone());
        let placed = Placed::new(memory, async move {
            let _held = held;
            std::future::pending::<()>().await;
        });
        drop(placed);
        assert_eq!(drops.load(Ordering::SeqCst), 2);

        // Too large for a block: boxed, same behaviour.
        let big = [1u8; CAPACITY * 2];
        let (sum, _) = block_on(Placed::new(CallMemory::new(), async move {
            YieldOnce(false).await;
            big.iter().map(|b| u32::from(*b)).sum::<u32>()
        }));
        assert_eq!(sum, 2 * CAPACITY as u32);
    }
}
