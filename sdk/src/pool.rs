//! [`BufPool`]: a few buffers that are handed out again once every frame split off them
//! has been dropped.
//!
//! A frame is `BytesMut::split().freeze()` of a pooled buffer, so it shares that
//! buffer's allocation; when the writer (or the stream consuming a received frame)
//! drops it, the pooled handle is the only owner left and
//! [`BytesMut::try_reclaim`] makes the whole allocation usable again without a call
//! into the allocator. Streaming then touches the same few warm pages over and over,
//! instead of a fresh allocation per frame (which, at 64 KiB and up, glibc serves from
//! freshly faulted-in pages and gives back to the kernel when the frame is freed: the
//! page faults and page clearing were a tenth of a tunnel endpoint's CPU).

use bytes::BytesMut;

/// Up to `max` buffers of at least `size` bytes each, reused round-robin.
#[derive(Debug)]
pub(crate) struct BufPool {
    bufs: Vec<BytesMut>,
    /// Where the next search starts: the buffer after the one handed out last, which
    /// is the one most likely to be free again (frames are released in order).
    next: usize,
    size: usize,
    max: usize,
    /// A buffer that is not pooled, for when every pooled one is still in use.
    overflow: BytesMut,
}

impl BufPool {
    /// An empty pool; buffers are allocated on first use.
    pub(crate) fn new(size: usize, max: usize) -> Self {
        Self {
            bufs: Vec::new(),
            next: 0,
            size,
            max: max.max(1),
            overflow: BytesMut::new(),
        }
    }

    /// An empty buffer with room for at least `need` bytes: a pooled one whose frames
    /// are all gone, else a new pooled one while fewer than `max` exist, else a plain
    /// allocation. Whatever is split off it keeps its memory until dropped.
    pub(crate) fn get(&mut self, need: usize) -> &mut BytesMut {
        let count = self.bufs.len();
        let found = (0..count)
            .map(|i| (self.next + i) % count)
            .find(|&i| self.bufs[i].is_empty() && self.bufs[i].try_reclaim(need));
        let index = match found {
            Some(i) => i,
            None if count < self.max => {
                self.bufs.push(BytesMut::with_capacity(self.size.max(need)));
                count
            }
            None => {
                self.overflow = BytesMut::with_capacity(need);
                return &mut self.overflow;
            }
        };
        self.next = (index + 1) % self.bufs.len();
        &mut self.bufs[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_reused_once_its_frames_are_dropped() {
        let mut pool = BufPool::new(1024, 2);
        let base = pool.get(100).as_ptr() as usize;
        for i in 0..50u8 {
            let buf = pool.get(100);
            buf.extend_from_slice(&[i; 100]);
            let frame = buf.split().freeze();
            let at = frame.as_ptr() as usize;
            assert!(
                (base..base + 1024).contains(&at),
                "frame {i} in the first buffer"
            );
            assert_eq!(&frame[..], &[i; 100]);
        }
    }

    #[test]
    fn frames_in_use_are_never_overwritten() {
        let mut pool = BufPool::new(64, 2);
        let mut held = Vec::new();
        for i in 0..5u8 {
            let buf = pool.get(64);
            buf.extend_from_slice(&[i; 64]);
            held.push(buf.split().freeze());
        }
        for (i, frame) in held.iter().enumerate() {
            assert!(
                frame.iter().all(|&b| usize::from(b) == i),
                "frame {i} intact"
            );
        }
        drop(held);
        // A request larger than the pooled size gets a buffer of its own.
        let buf = pool.get(4096);
        assert!(buf.capacity() >= 4096);
        assert!(buf.is_empty());
    }
}
