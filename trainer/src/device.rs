//! Device selection.

use tch::Device;

/// CUDA device 0 when libtorch was linked with CUDA and sees a GPU, else the CPU.
pub fn best() -> Device {
    Device::cuda_if_available()
}

/// A one-line description, e.g. `cpu (libtorch, 2 threads)` or `cuda:0 (1 GPU)`.
pub fn describe(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i} ({} GPU)", tch::Cuda::device_count()),
        _ => format!("cpu (libtorch, {} threads)", tch::get_num_threads()),
    }
}
