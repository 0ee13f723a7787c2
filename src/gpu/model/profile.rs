//! Per-kernel timing of a step (`bench --profile`): the same commands a
//! step records, each dispatch timed.

use anyhow::Result;

use super::step::Op;
use super::GpuModel;

/// GPU milliseconds by kernel family, in order of first use, and how they
/// were measured; dispatches and submissions counted per step as the
/// normal (untimed) path records them.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    pub ms: Vec<(String, f64)>,
    pub method: &'static str,
    /// Dispatches recorded, over all steps profiled.
    pub dispatches: usize,
    /// Steps profiled (each one submission when not profiled).
    pub steps: usize,
}

impl Profile {
    fn add_ms(&mut self, family: String, ms: f64) {
        match self.ms.iter_mut().find(|(f, _)| *f == family) {
            Some(e) => e.1 += ms,
            None => self.ms.push((family, ms)),
        }
    }

    /// Adds another run's times (keeps the method of the last).
    pub fn add(&mut self, other: Profile) {
        for (f, ms) in other.ms {
            self.add_ms(f, ms);
        }
        self.method = other.method;
        self.dispatches += other.dispatches;
        self.steps += other.steps;
    }
}

impl GpuModel {
    /// Dispatches one layer records for a step of `rows` tokens, the first
    /// `chunk` of them a prompt chunk (the rest decode tokens).
    pub fn dispatches_per_layer(&self, rows: usize, chunk: usize) -> usize {
        let s = super::ops::Shape {
            rows,
            chunk,
            n_chunks: 1,
        };
        self.ops.layer_dispatches(s) / self.cfg.n_layer
    }

    /// Runs `ops` with each dispatch timed. With timestamp queries, each
    /// dispatch gets its own compute pass with begin/end timestamps (so
    /// passes, not the normal single pass, are timed: a small per-pass
    /// overhead is included). Without them, each dispatch is submitted alone
    /// and timed on the CPU up to completion, which includes submission
    /// latency and is only a rough guide.
    pub(crate) fn time_ops(&self, ops: &[Op]) -> Result<Profile> {
        let mut p = Profile {
            steps: 1,
            ..Default::default()
        };
        let runs = ops.iter().filter(|o| matches!(o, Op::Run(..))).count();
        p.dispatches = runs;
        if self.gpu.features.timestamps {
            p.method = "GPU timestamp queries, one compute pass per dispatch";
            let n = (runs * 2) as u32;
            let qs = self.gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count: n.max(2),
            });
            let resolve = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile resolve"),
                size: n.max(2) as u64 * 8,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            let mut timed = Vec::new();
            for op in ops {
                match *op {
                    Op::Run(d, groups) => {
                        let i = timed.len() as u32;
                        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: None,
                            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                                query_set: &qs,
                                beginning_of_pass_write_index: Some(2 * i),
                                end_of_pass_write_index: Some(2 * i + 1),
                            }),
                        });
                        d.encode_with(&mut pass, groups);
                        timed.push(d.kernel.family());
                    }
                    Op::Copy(src, so, dst, doff, bytes) => {
                        enc.copy_buffer_to_buffer(src, so, dst, doff, bytes)
                    }
                }
            }
            enc.resolve_query_set(&qs, 0..n, &resolve, 0);
            self.gpu.queue.submit([enc.finish()]);
            let bytes = self.gpu.read_bytes(&resolve, n as u64 * 8)?;
            let ticks: &[u64] = bytemuck::cast_slice(&bytes);
            let period_ns = self.gpu.queue.get_timestamp_period() as f64;
            for (i, family) in timed.into_iter().enumerate() {
                let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period_ns / 1e6;
                p.add_ms(family, dt);
            }
        } else {
            p.method =
                "CPU wall time per dispatch submitted alone (no timestamp queries on this adapter)";
            for op in ops {
                let t = std::time::Instant::now();
                let mut enc = self.gpu.device.create_command_encoder(&Default::default());
                match *op {
                    Op::Run(d, groups) => {
                        {
                            let mut pass = enc.begin_compute_pass(&Default::default());
                            d.encode_with(&mut pass, groups);
                        }
                        self.gpu.queue.submit([enc.finish()]);
                        self.gpu.wait()?;
                        p.add_ms(d.kernel.family(), t.elapsed().as_secs_f64() * 1e3);
                    }
                    Op::Copy(src, so, dst, doff, bytes) => {
                        enc.copy_buffer_to_buffer(src, so, dst, doff, bytes);
                        self.gpu.queue.submit([enc.finish()]);
                    }
                }
            }
        }
        Ok(p)
    }
}
