//! Stack safety for long texts.
//!
//! sqlparser parses left-deep operator chains (`1+1+…`, `1!!!…`, `x::int::int…`) with a
//! loop, so its recursion limit does not bound their depth, but the AST's `Drop`
//! recurses once per operator: a 100 KB chain aborts a 2 MiB-stack thread (research
//! §3.7), and sqlparser drops what it built when a parse fails, out of our reach.
//! Visiting and printing are protected by sqlparser's `recursive-protection` feature;
//! the drop is not. So the analysis of a long text runs on a stack grown (with
//! `stacker`, which that feature uses too) in proportion to the text's length.

/// Texts shorter than this cannot nest deeply enough to matter (one level per byte
/// at most; 4 096 levels of `Drop` fit in a 2 MiB stack, checked by
/// `tests/normalizer_stack.rs`), so they run on the caller's stack.
const GROW_FROM_LEN: usize = 4 * 1024;

/// Stack bytes per byte of text (at most one level of `Drop` per byte, e.g. `1!!!…`).
/// 64 suffice in a debug build for every case of `tests/normalizer_stack.rs`; 512
/// leaves an 8× margin.
const STACK_PER_BYTE: usize = 512;

/// Stack for everything but the deep drop.
const BASE_STACK: usize = 1 << 20;

/// Run `f`, the analysis of a text of `len` bytes, on a stack large enough for the
/// deepest AST such a text can produce. The stack is mapped for the call and unmapped
/// after; untouched pages cost no memory.
pub(crate) fn with_stack_for<R>(len: usize, f: impl FnOnce() -> R) -> R {
    if len < GROW_FROM_LEN {
        f()
    } else {
        stacker::grow(BASE_STACK + STACK_PER_BYTE * len, f)
    }
}
