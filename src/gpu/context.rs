//! Adapter selection and the device: which GPU, which optional features, which limits.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _, Result};
use serde::Serialize;

/// How to pick and configure the device.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Restrict to one backend (`vulkan`, `metal`, `dx12`, `gl`).
    pub backend: Option<String>,
    /// Index into [`list_adapters`] for that backend set.
    pub device: Option<usize>,
    /// Run without SHADER_F16 / subgroups / timestamp queries even when present,
    /// so the portable paths can be tested on any machine.
    pub no_f16: bool,
    pub no_subgroups: bool,
    pub no_timestamps: bool,
    /// Pretend the largest storage binding is this many bytes (tests of tensor splitting).
    pub max_binding_override: Option<u64>,
    /// Overrides of the adapter's default [`Tuning`].
    pub matvec_rows: Option<u32>,
    pub matvec_group: Option<u32>,
    pub matmul_regs: Option<u32>,
    pub multi_rows: Option<u32>,
    pub multi_tokens: Option<u32>,
}

/// How the weight kernels spread work over invocations: the matvec (see
/// `shaders/matvec.wgsl`), where a group of at most `matvec_max_group`
/// invocations (fewer when a row has few 32-element items) computes
/// `matvec_rows` consecutive rows, and the matmul (`shaders/matmul.wgsl`),
/// where each invocation accumulates a `matmul_regs` x `matmul_regs`
/// register tile of the workgroup's 64 x 64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Tuning {
    /// Which adapter default this started from (`Tuning::for_adapter`):
    /// cpu, nvidia, amd-gcn, amd, intel, apple or gpu.
    pub profile: &'static str,
    /// 1, 2 or 4.
    pub matvec_rows: u32,
    /// 8, 16, 32 or 64.
    pub matvec_max_group: u32,
    /// 8 (64 invocations per workgroup) or 16 (16 invocations).
    pub matmul_regs: u32,
    /// Rows per invocation group of the few-token matvec (steps of 2..=16
    /// tokens): 1, 2, 4 or 8.
    pub multi_rows: u32,
    /// Most tokens one few-token dispatch takes (2, 4, 8 or 16); wider
    /// steps run several dispatches over groups of tokens.
    pub multi_tokens: u32,
}

/// PCI vendor ids (Vulkan, DX12 and GL report these; Metal reports Apple's).
const VENDOR_NVIDIA: u32 = 0x10de;
const VENDOR_AMD: u32 = 0x1002;
const VENDOR_INTEL: u32 = 0x8086;
const VENDOR_APPLE: u32 = 0x106b;

impl Tuning {
    /// The starting point for an adapter, by device type and vendor, with
    /// the name it is logged under. `--matvec-rows` and the other overrides
    /// apply on top; scripts/gpu-check.sh sweeps them on a real GPU.
    ///
    /// CPU adapters (lavapipe, SwiftShader) run a subgroup as one SIMD
    /// instruction stream and turn each storage or workgroup-memory load
    /// into a loop over the lanes, so what counts is loaded values per
    /// multiply-add: four matvec rows share each load of x in narrow, full
    /// groups (2.3x faster decode on lavapipe than one row per group of 16),
    /// and a 16 x 16 matmul register tile halves the loads per multiply-add
    /// of the 8 x 8 one (both measured, docs/benchmarks.md).
    ///
    /// GPUs keep the 8 x 8 tile, whose 64 accumulators fit in registers, and
    /// take rows per matvec group from what llama.cpp's backends use per
    /// vendor (not yet measured here on those GPUs): one row per wide group
    /// on NVIDIA and RDNA (Vulkan's `rm_stdq = 1`), so that even a 576-row
    /// matrix spreads over many cores; two on Intel and on AMD GCN (wave64
    /// only: subgroup sizes 64..64), as its `rm_stdq = 2`, with Intel's
    /// groups of 16 (its subgroup width there); four rows per 32-wide group
    /// on Apple, as ggml-metal's matvec gives each simdgroup four rows.
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Self {
        let gpu = |profile, matvec_rows, matvec_max_group| Tuning {
            profile,
            matvec_rows,
            matvec_max_group,
            matmul_regs: 8,
            multi_rows: 1,
            multi_tokens: 16,
        };
        if info.device_type == wgpu::DeviceType::Cpu {
            return Tuning {
                profile: "cpu",
                matvec_rows: 4,
                matvec_max_group: 8,
                matmul_regs: 16,
                multi_rows: 8,
                multi_tokens: 4,
            };
        }
        match info.vendor & 0xffff {
            VENDOR_NVIDIA => gpu("nvidia", 1, 64),
            VENDOR_AMD if info.subgroup_min_size == 64 => gpu("amd-gcn", 2, 64),
            VENDOR_AMD => gpu("amd", 1, 64),
            VENDOR_INTEL => gpu("intel", 2, 16),
            _ if info.vendor == VENDOR_APPLE
                || (info.backend == wgpu::Backend::Metal && info.name.starts_with("Apple")) =>
            {
                gpu("apple", 4, 32)
            }
            _ => gpu("gpu", 1, 64),
        }
    }
}

/// The optional features in use on this device.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct GpuFeatures {
    pub shader_f16: bool,
    pub subgroups: bool,
    pub timestamps: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub max_storage_binding: u64,
    pub max_buffer_size: u64,
    pub max_workgroup_size_x: u32,
    pub max_invocations_per_workgroup: u32,
    pub max_workgroup_storage: u32,
    pub shader_f16: bool,
    pub subgroups: bool,
    pub subgroup_sizes: (u32, u32),
    pub timestamp_queries: bool,
}

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: GpuFeatures,
    /// Largest buffer one binding may cover (possibly lowered by options).
    pub max_binding: u64,
    pub tuning: Tuning,
    pub(crate) kernels: super::kernels::KernelCache,
    /// The first GPU error since the last [`Gpu::wait`]: a wgpu validation
    /// error (wgpu's default handler would panic) or a dispatch refused by
    /// [`Gpu::dispatch`]'s grid check. `wait` turns it into an `Err`.
    pub(crate) errors: ErrorSink,
}

/// Where GPU errors are kept until the next [`Gpu::wait`].
#[derive(Clone, Default)]
pub(crate) struct ErrorSink(Arc<std::sync::Mutex<Option<String>>>);

impl ErrorSink {
    /// Keeps the first error: later ones are usually its consequences.
    pub(crate) fn report(&self, msg: String) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            tracing::debug!("GPU error: {msg}");
            *slot = Some(msg);
        }
    }

    fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

fn parse_backends(name: Option<&str>) -> Result<wgpu::Backends> {
    Ok(match name.map(|s| s.to_ascii_lowercase()).as_deref() {
        None => wgpu::Backends::all(),
        Some("vulkan") | Some("vk") => wgpu::Backends::VULKAN,
        Some("metal") | Some("mtl") => wgpu::Backends::METAL,
        Some("dx12") | Some("d3d12") => wgpu::Backends::DX12,
        Some("gl") | Some("gles") | Some("opengl") => wgpu::Backends::GL,
        Some(other) => bail!("unknown backend '{other}' (expected vulkan, metal, dx12 or gl)"),
    })
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

fn adapters(backend: Option<&str>) -> Result<Vec<wgpu::Adapter>> {
    let backends = parse_backends(backend)?;
    let mut list = pollster::block_on(instance(backends).enumerate_adapters(backends));
    // Stable order: best device type first, then by backend and name.
    list.sort_by_key(|a| {
        let i = a.get_info();
        (type_rank(i.device_type), backend_rank(i.backend), i.name)
    });
    Ok(list)
}

fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

fn backend_rank(b: wgpu::Backend) -> u8 {
    // Prefer the native modern APIs over GL when one GPU shows up under several.
    match b {
        wgpu::Backend::Metal | wgpu::Backend::Dx12 | wgpu::Backend::Vulkan => 0,
        _ => 1,
    }
}

fn summarize(index: usize, a: &wgpu::Adapter) -> AdapterSummary {
    let info = a.get_info();
    let l = a.limits();
    let f = a.features();
    AdapterSummary {
        index,
        name: info.name.clone(),
        backend: format!("{:?}", info.backend).to_lowercase(),
        device_type: format!("{:?}", info.device_type),
        driver: info.driver.clone(),
        driver_info: info.driver_info.clone(),
        max_storage_binding: l.max_storage_buffer_binding_size,
        max_buffer_size: l.max_buffer_size,
        max_workgroup_size_x: l.max_compute_workgroup_size_x,
        max_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
        max_workgroup_storage: l.max_compute_workgroup_storage_size,
        shader_f16: f.contains(wgpu::Features::SHADER_F16),
        subgroups: f.contains(wgpu::Features::SUBGROUP),
        subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
        timestamp_queries: f.contains(wgpu::Features::TIMESTAMP_QUERY),
    }
}

/// Every adapter wgpu can see, best first.
pub fn list_adapters(backend: Option<&str>) -> Result<Vec<AdapterSummary>> {
    Ok(adapters(backend)?
        .iter()
        .enumerate()
        .map(|(i, a)| summarize(i, a))
        .collect())
}

const NO_ADAPTER_HELP: &str = "no GPU adapter found: install your GPU's Vulkan, Metal or DX12 driver \
     (on Linux without a GPU, Mesa's lavapipe CPU driver works: apt-get install mesa-vulkan-drivers)";

impl Gpu {
    pub fn new(opts: &GpuOptions) -> Result<Arc<Gpu>> {
        let list = adapters(opts.backend.as_deref())?;
        if list.is_empty() {
            match &opts.backend {
                Some(b) => bail!("no GPU adapter found for backend '{b}'; {NO_ADAPTER_HELP}"),
                None => bail!("{NO_ADAPTER_HELP}"),
            }
        }
        let adapter = match opts.device {
            Some(i) => list.get(i).ok_or_else(|| {
                anyhow!(
                    "--device {i}: only {} adapter(s) found (see `llama-wgpu devices`)",
                    list.len()
                )
            })?,
            None => &list[0],
        };
        let info = adapter.get_info();
        let available = adapter.features();
        let mut wanted = wgpu::Features::empty();
        let mut want = |flag: wgpu::Features, off: bool| {
            let on = !off && available.contains(flag);
            if on {
                wanted |= flag;
            }
            on
        };
        let features = GpuFeatures {
            shader_f16: want(wgpu::Features::SHADER_F16, opts.no_f16),
            subgroups: want(wgpu::Features::SUBGROUP, opts.no_subgroups),
            timestamps: want(wgpu::Features::TIMESTAMP_QUERY, opts.no_timestamps),
        };
        if features.timestamps && available.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
        {
            wanted |= wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        }
        // The adapter's real maxima: large models need big buffers and bindings.
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("llama-wgpu"),
            required_features: wanted,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .with_context(|| format!("cannot open GPU device '{}'", info.name))?;
        let errors = ErrorSink::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            // wgpu's messages span lines (a chain of causes); one line here.
            let msg = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            sink.report(msg);
        }));
        let mut max_binding = limits.max_storage_buffer_binding_size;
        if let Some(m) = opts.max_binding_override {
            max_binding = max_binding.min(m);
        }
        let default = Tuning::for_adapter(&info);
        let mut tuning = default;
        match opts.matvec_rows {
            Some(r @ (1 | 2 | 4)) => tuning.matvec_rows = r,
            Some(r) => bail!("--matvec-rows must be 1, 2 or 4, got {r}"),
            None => {}
        }
        match opts.matvec_group {
            Some(g @ (8 | 16 | 32 | 64)) => tuning.matvec_max_group = g,
            Some(g) => bail!("--matvec-group must be 8, 16, 32 or 64, got {g}"),
            None => {}
        }
        match opts.matmul_regs {
            Some(r @ (8 | 16)) => tuning.matmul_regs = r,
            Some(r) => bail!("--matmul-regs must be 8 or 16, got {r}"),
            None => {}
        }
        match opts.multi_rows {
            Some(r @ (1 | 2 | 4 | 8)) => tuning.multi_rows = r,
            Some(r) => bail!("--multi-rows must be 1, 2, 4 or 8, got {r}"),
            None => {}
        }
        match opts.multi_tokens {
            Some(t @ (2 | 4 | 8 | 16)) => tuning.multi_tokens = t,
            Some(t) => bail!("--multi-tokens must be 2, 4, 8 or 16, got {t}"),
            None => {}
        }
        tracing::info!(
            "GPU: {} ({:?}, {:?}), f16 {}, subgroups {}, timestamps {}",
            info.name,
            info.backend,
            info.device_type,
            features.shader_f16,
            features.subgroups,
            features.timestamps
        );
        tracing::info!(
            "tuning: {}{}: matvec {} row(s) per group of up to {}, matmul {}x{} per invocation, few-token matvec {} row(s), up to {} tokens a dispatch",
            tuning.profile,
            if tuning != default { " with overrides" } else { "" },
            tuning.matvec_rows,
            tuning.matvec_max_group,
            tuning.matmul_regs,
            tuning.matmul_regs,
            tuning.multi_rows,
            tuning.multi_tokens
        );
        Ok(Arc::new(Gpu {
            device,
            queue,
            info,
            limits,
            features,
            max_binding,
            tuning,
            kernels: Default::default(),
            errors,
        }))
    }

    /// Waits for all submitted work; fails if any GPU error was reported
    /// since the last wait (the results would then be garbage).
    /// Waits for one submission (not for the ones after it), then reports
    /// any GPU error as [`Gpu::wait`] does.
    pub fn wait_for(&self, index: wgpu::SubmissionIndex) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(|e| anyhow!("GPU wait failed: {e}"))?;
        match self.errors.take() {
            Some(msg) => bail!("GPU error: {msg}"),
            None => Ok(()),
        }
    }

    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("GPU wait failed: {e}"))?;
        match self.errors.take() {
            Some(msg) => bail!("GPU error: {msg}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_follows_device_type_then_vendor() {
        use wgpu::{Backend::*, DeviceType::*};
        // (device type, backend, vendor, name, subgroup sizes) -> (profile, matvec rows, group, matmul regs)
        let cases = [
            // lavapipe reports Mesa's vendor id; the device type decides.
            (
                (Cpu, Vulkan, 0x10005, "llvmpipe", (8, 8)),
                ("cpu", 4, 8, 16),
            ),
            (
                (DiscreteGpu, Vulkan, 0x10de, "H200", (32, 32)),
                ("nvidia", 1, 64, 8),
            ),
            (
                (DiscreteGpu, Vulkan, 0x1002, "Radeon VII", (64, 64)),
                ("amd-gcn", 2, 64, 8),
            ),
            (
                (DiscreteGpu, Vulkan, 0x1002, "RX 7900", (32, 64)),
                ("amd", 1, 64, 8),
            ),
            (
                (IntegratedGpu, Dx12, 0x8086, "Arc", (8, 32)),
                ("intel", 2, 16, 8),
            ),
            (
                (IntegratedGpu, Metal, 0, "Apple M2", (32, 32)),
                ("apple", 4, 32, 8),
            ),
            // An AMD GPU in an Intel Mac is not Apple's.
            (
                (DiscreteGpu, Metal, 0, "AMD Radeon Pro 5500M", (32, 64)),
                ("gpu", 1, 64, 8),
            ),
            (
                (IntegratedGpu, Vulkan, 0x5143, "Adreno", (64, 128)),
                ("gpu", 1, 64, 8),
            ),
        ];
        for ((t, backend, vendor, name, (min, max)), want) in cases {
            let mut info = wgpu::AdapterInfo::new(t, backend);
            info.vendor = vendor;
            info.name = name.into();
            info.subgroup_min_size = min;
            info.subgroup_max_size = max;
            let got = Tuning::for_adapter(&info);
            let got = (
                got.profile,
                got.matvec_rows,
                got.matvec_max_group,
                got.matmul_regs,
            );
            assert_eq!(got, want, "{name}");
        }
    }
}
