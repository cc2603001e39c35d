//! weft-kernel
