//! A byte buffer whose memory starts at a 4 KiB boundary: what a write around the page cache
//! (`O_DIRECT`) needs, with its file offset and length multiples of 4 KiB as well. The Raft
//! log's appends are built in one (`log_files.rs`) and reach the disk without a kernel copy.

use std::alloc::{alloc_zeroed, dealloc, handle_alloc_error, realloc, Layout};
use std::ptr::NonNull;

/// The alignment of the buffer's memory, and of the offsets and lengths written from it.
pub(crate) const ALIGN: usize = 4096;

pub(crate) struct AlignedBuf {
    ptr: NonNull<u8>,
    capacity: usize,
    len: usize,
}

// It owns its memory, as a `Vec<u8>` does.
unsafe impl Send for AlignedBuf {}

fn layout(capacity: usize) -> Layout {
    Layout::from_size_align(capacity, ALIGN).expect("a buffer size below isize::MAX")
}

/// `n` rounded up to a multiple of [`ALIGN`].
pub(crate) fn align_up(n: u64) -> u64 {
    n.div_ceil(ALIGN as u64) * ALIGN as u64
}

impl AlignedBuf {
    pub(crate) fn with_capacity(capacity: usize) -> AlignedBuf {
        let capacity = align_up(capacity.max(ALIGN) as u64) as usize;
        // SAFETY: the layout's size is not zero. Zeroed, so every byte is always initialised
        // (a buffer is allocated once and reused).
        let ptr = unsafe { alloc_zeroed(layout(capacity)) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| handle_alloc_error(layout(capacity)));
        AlignedBuf { ptr, capacity, len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are allocated and were written (see `extend`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Makes the buffer `n` bytes longer (growing it if it must) and returns those bytes for the
    /// caller to fill. They hold whatever an earlier use left there.
    pub(crate) fn extend(&mut self, n: usize) -> &mut [u8] {
        let len = self.len + n;
        if len > self.capacity {
            let capacity = align_up(len.max(self.capacity * 2) as u64) as usize;
            // SAFETY: `ptr` was allocated with `layout(self.capacity)`; the new size is not zero.
            let ptr = unsafe { realloc(self.ptr.as_ptr(), layout(self.capacity), capacity) };
            self.ptr = NonNull::new(ptr).unwrap_or_else(|| handle_alloc_error(layout(capacity)));
            // SAFETY: the grown part is inside the new allocation.
            unsafe {
                self.ptr
                    .as_ptr()
                    .add(self.capacity)
                    .write_bytes(0, capacity - self.capacity)
            };
            self.capacity = capacity;
        }
        let start = self.len;
        self.len = len;
        // SAFETY: `start..len` is inside the allocation, and initialised (see `with_capacity`).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(start), n) }
    }

    /// Appends `n` zero bytes.
    pub(crate) fn zeros(&mut self, n: usize) {
        self.extend(n).fill(0);
    }

    /// Drops the first `n` bytes, moving the rest to the front.
    pub(crate) fn consume(&mut self, n: usize) {
        assert!(n <= self.len, "consume {n} of {} bytes", self.len);
        // SAFETY: both ranges lie in the first `len` bytes; `copy` allows them to overlap.
        unsafe { std::ptr::copy(self.ptr.as_ptr().add(n), self.ptr.as_ptr(), self.len - n) };
        self.len -= n;
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout, and not freed before.
        unsafe { dealloc(self.ptr.as_ptr(), layout(self.capacity)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_stays_aligned_as_it_grows_and_keeps_its_bytes() {
        let mut buf = AlignedBuf::with_capacity(10);
        assert_eq!(buf.capacity(), ALIGN);
        buf.extend(3).copy_from_slice(b"abc");
        buf.extend(ALIGN * 3).fill(7);
        assert_eq!(buf.as_slice().as_ptr() as usize % ALIGN, 0);
        assert_eq!(&buf.as_slice()[..4], b"abc\x07");
        assert_eq!(buf.len(), 3 + ALIGN * 3);
        buf.consume(2);
        assert_eq!(&buf.as_slice()[..2], b"c\x07");
        buf.zeros(5);
        assert_eq!(&buf.as_slice()[buf.len() - 6..], &[7, 0, 0, 0, 0, 0]);
        buf.clear();
        assert!(buf.as_slice().is_empty());
        assert_eq!(
            (align_up(0), align_up(1), align_up(4096), align_up(4097)),
            (0, 4096, 4096, 8192)
        );
    }
}
