//! Bounds-checked access to a module's exported `memory` from host functions.

use wasmtime::{Caller, Extern, Memory};

/// Returns the caller's exported `memory`, if it has one.
pub fn exported<T>(caller: &mut Caller<'_, T>) -> Option<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Some(memory),
        _ => None,
    }
}

/// Converts a guest pointer and length into a range of `data`, or `None` when it does not fit.
pub fn range(data: &[u8], ptr: i32, len: i32) -> Option<std::ops::Range<usize>> {
    let start = u32::try_from(ptr).ok()? as usize;
    let len = u32::try_from(len).ok()? as usize;
    let end = start.checked_add(len)?;
    (end <= data.len()).then_some(start..end)
}

/// Copies `len` bytes at `ptr` out of the guest's memory.
pub fn read<T>(caller: &mut Caller<'_, T>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let memory = exported(caller)?;
    let data = memory.data(&caller);
    range(data, ptr, len).map(|range| data[range].to_vec())
}

/// Writes `bytes` at `ptr` in the guest's memory; returns false when it does not fit.
pub fn write<T>(caller: &mut Caller<'_, T>, ptr: i32, bytes: &[u8]) -> bool {
    let Some(memory) = exported(caller) else {
        return false;
    };
    let Ok(len) = i32::try_from(bytes.len()) else {
        return false;
    };
    let data = memory.data_mut(caller);
    match range(data, ptr, len) {
        Some(range) => {
            data[range].copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

/// Writes a little-endian `u32` at `ptr`.
pub fn write_u32<T>(caller: &mut Caller<'_, T>, ptr: i32, value: u32) -> bool {
    write(caller, ptr, &value.to_le_bytes())
}
