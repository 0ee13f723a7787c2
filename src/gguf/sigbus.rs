//! A clear message instead of a silent death when a mapped model file is
//! truncated (or replaced) while in use: reading a page past the file's new
//! end raises SIGBUS, which would kill the process with no word about why.
//!
//! Each mapping registers its address range and a ready-made message; the
//! handler (async-signal-safe: atomics, `write`, `_exit`) prints the message
//! of the mapping that faulted and exits with status 1. A fault outside every
//! registered mapping gets the default action, as before.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Mappings watched at once (`bench` may hold a few models).
const SLOTS: usize = 32;

struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    msg: AtomicUsize,
    msg_len: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    msg: AtomicUsize::new(0),
    msg_len: AtomicUsize::new(0),
};
static MAPPINGS: [Slot; SLOTS] = [EMPTY; SLOTS];

/// Watches `[start, start + len)`; the guard stops watching when dropped.
pub(crate) struct Guard {
    slot: Option<usize>,
    /// Owns the message the slot points at.
    _msg: Box<[u8]>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            // Zero length first: the handler then ignores the slot.
            MAPPINGS[i].len.store(0, Ordering::SeqCst);
            MAPPINGS[i].start.store(0, Ordering::SeqCst);
        }
    }
}

pub(crate) fn watch(start: *const u8, len: usize, path: &std::path::Path) -> Guard {
    install();
    let msg: Box<[u8]> = format!(
        "error: {}: the model file was truncated or changed while in use (SIGBUS reading its memory map); \
         do not modify a model file while llama-wgpu has it open\n",
        path.display()
    )
    .into_bytes()
    .into_boxed_slice();
    for (i, s) in MAPPINGS.iter().enumerate() {
        if s.start
            .compare_exchange(0, start as usize, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            s.msg.store(msg.as_ptr() as usize, Ordering::SeqCst);
            s.msg_len.store(msg.len(), Ordering::SeqCst);
            s.len.store(len, Ordering::SeqCst);
            return Guard {
                slot: Some(i),
                _msg: msg,
            };
        }
    }
    // All slots taken: this mapping keeps the default behaviour.
    Guard {
        slot: None,
        _msg: msg,
    }
}

#[cfg(unix)]
fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| unsafe {
        // SAFETY: a plain sigaction with a handler that only does
        // async-signal-safe work.
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    });
}

#[cfg(not(unix))]
fn install() {}

#[cfg(unix)]
extern "C" fn handler(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    for s in &MAPPINGS {
        let (start, len) = (s.start.load(Ordering::SeqCst), s.len.load(Ordering::SeqCst));
        if len > 0 && addr >= start && addr - start < len {
            let (msg, msg_len) = (
                s.msg.load(Ordering::SeqCst),
                s.msg_len.load(Ordering::SeqCst),
            );
            // SAFETY: the guard owning the message outlives the slot's registration.
            unsafe {
                libc::write(2, msg as *const libc::c_void, msg_len);
                libc::_exit(1);
            }
        }
    }
    // Not ours: back to the default action, which the re-executed access raises.
    unsafe {
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
    }
}
