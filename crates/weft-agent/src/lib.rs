//! weft-agent
