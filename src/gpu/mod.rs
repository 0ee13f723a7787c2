//! The GPU side: device, kernels, weight layout, and the forward pass.

mod context;
pub mod kernels;
pub mod layout;
mod model;
pub mod params;
pub mod weights;

pub use context::{list_adapters, AdapterSummary, Gpu, GpuFeatures, GpuOptions, Tuning};
pub use kernels::{parse_cache_type, CacheTypes};
pub use model::{
    estimate_bytes, BatchOutput, ChunkInput, ContextOptions, DecodeInput, GpuModel, LoadOptions,
    Output, PendingDecode, Profile, StepInput, StepOutput, TokenSource, DEFAULT_BATCH, MAX_TOP_K,
};
