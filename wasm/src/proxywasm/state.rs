//! The data a VM's `wasmtime::Store` carries, which host functions reach through `Caller`:
//! the plugin's identity and configuration, its contexts, the callback in progress (with the
//! stream's [`HttpHost`]), and the helpers that move bytes in and out of guest memory.

use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Caller, Extern, Memory, StoreLimits, TypedFunc};

use super::abi::Status;
use super::http::{CallEffects, HttpHost};
use super::shared::{MetricCell, MetricScope, SharedDataScope};
use crate::host::HostCtx;
use crate::wasi::WasiCtx;

/// The id of the root (plugin) context, which every VM creates first.
pub const ROOT_CONTEXT_ID: u32 = 1;

/// The state every VM of one revision shares.
pub(crate) struct PluginInfo {
    /// The revision name: the VM id and the plugin name.
    pub(crate) revision: String,
    /// The root id, which Envoy takes from the filter's `root_id` and defaults to empty.
    pub(crate) root_id: String,
    /// The bytes `PLUGIN_CONFIGURATION` returns during `proxy_on_configure`.
    pub(crate) plugin_configuration: Vec<u8>,
    /// The bytes `VM_CONFIGURATION` returns. edgefn has no VM configuration, so it is empty.
    pub(crate) vm_configuration: Vec<u8>,
    pub(crate) shared_data: SharedDataScope,
    pub(crate) metrics: MetricScope,
}

/// The store data of one VM.
pub(crate) struct VmData {
    pub(crate) wasi: WasiCtx,
    pub(crate) host: HostCtx,
    pub(crate) limits: StoreLimits,
    pub(crate) abi: AbiState,
    /// The instance's exported `memory`, looked up once after instantiation, because a
    /// lookup by name on every host call costs more than the call itself.
    pub(crate) memory: Option<Memory>,
}

/// One context the plugin created in `proxy_on_context_create`.
#[derive(Default)]
pub(crate) struct ContextState {
    /// Properties the plugin set with `proxy_set_property`, by serialized path.
    pub(crate) properties: HashMap<Vec<u8>, Vec<u8>>,
    /// `proxy_on_done` returned false, so the plugin may still call `proxy_done`.
    pub(crate) done_pending: bool,
}

/// The proxy-wasm side of a VM's store data.
pub(crate) struct AbiState {
    pub(crate) plugin: Arc<PluginInfo>,
    pub(crate) contexts: HashMap<u32, ContextState>,
    /// The context host functions act on: the callback's, or the one the plugin chose with
    /// `proxy_set_effective_context`.
    pub(crate) effective_context: u32,
    /// The context of the callback in progress.
    pub(crate) call_context: u32,
    /// The stream of the callback in progress; `None` outside stream callbacks.
    host: Option<NonNull<dyn HttpHost>>,
    pub(crate) effects: CallEffects,
    /// True during `proxy_on_configure`, the only time `PLUGIN_CONFIGURATION` is readable.
    pub(crate) configuring: bool,
    /// The guest's `proxy_on_memory_allocate` (or `malloc`), set after instantiation.
    pub(crate) allocator: Option<TypedFunc<u32, u32>>,
    pub(crate) tick_period: Option<Duration>,
    /// Metrics this VM defined, by the id it returned.
    pub(crate) metrics: HashMap<u32, Arc<MetricCell>>,
    /// How many metrics of each type this VM defined, which makes the next id.
    pub(crate) metrics_defined: [u32; 3],
}

impl AbiState {
    pub(crate) fn new(plugin: Arc<PluginInfo>) -> Self {
        Self {
            plugin,
            contexts: HashMap::new(),
            effective_context: ROOT_CONTEXT_ID,
            call_context: ROOT_CONTEXT_ID,
            host: None,
            effects: CallEffects::default(),
            configuring: false,
            allocator: None,
            tick_period: None,
            metrics: HashMap::new(),
            metrics_defined: [0; 3],
        }
    }

    /// Prepares for a callback on `context_id`, with the stream's host when it has one.
    ///
    /// The pointer must stay valid until [`AbiState::end_call`]: the VM sets it from a
    /// `&mut dyn HttpHost` it holds for the whole callback and ends the call before it
    /// returns.
    pub(crate) fn begin_call(&mut self, context_id: u32, host: Option<NonNull<dyn HttpHost>>) {
        self.call_context = context_id;
        self.effective_context = context_id;
        self.host = host;
        self.effects = CallEffects::default();
    }

    /// Forgets the callback's host and returns what the plugin asked of the stream.
    pub(crate) fn end_call(&mut self) -> CallEffects {
        self.host = None;
        self.configuring = false;
        std::mem::take(&mut self.effects)
    }

    /// Returns the stream of the callback in progress, unless the plugin switched the
    /// effective context to another one, whose stream this callback cannot reach.
    pub(crate) fn http_host(&mut self) -> Option<&mut dyn HttpHost> {
        if self.effective_context != self.call_context {
            return None;
        }
        let mut host = self.host?;
        // SAFETY: `begin_call` stores a pointer made from a `&mut dyn HttpHost` that the VM
        // holds, unused, until `end_call` clears it, and host functions only run between the
        // two. The returned borrow is tied to `&mut self`, so no second one exists at once.
        Some(unsafe { host.as_mut() })
    }

    /// Returns the state of the effective context.
    pub(crate) fn effective(&mut self) -> Option<&mut ContextState> {
        self.contexts.get_mut(&self.effective_context)
    }

    /// True when the effective context is a stream context (not the root).
    pub(crate) fn effective_is_stream(&self) -> bool {
        self.effective_context != ROOT_CONTEXT_ID
    }
}

/// Host-function access to the guest's memory. Guest pointers and lengths arrive as `i32`
/// and are read as unsigned, so a 32-bit address space is covered whole.
pub(crate) struct Guest;

impl Guest {
    fn memory(caller: &mut Caller<'_, VmData>) -> Option<Memory> {
        if let Some(memory) = caller.data().memory {
            return Some(memory);
        }
        match caller.get_export("memory") {
            Some(Extern::Memory(memory)) => Some(memory),
            _ => None,
        }
    }

    fn range(size: usize, ptr: i32, len: u64) -> Option<std::ops::Range<usize>> {
        let start = u64::from(ptr as u32);
        let end = start.checked_add(len)?;
        if end > size as u64 {
            return None;
        }
        Some(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }

    /// Copies `len` bytes at `ptr` out of guest memory.
    pub(crate) fn read(caller: &mut Caller<'_, VmData>, ptr: i32, len: i32) -> Option<Vec<u8>> {
        let memory = Self::memory(caller)?;
        let data = memory.data(&caller);
        let range = Self::range(data.len(), ptr, u64::from(len as u32))?;
        Some(data[range].to_vec())
    }

    /// Writes `bytes` at `ptr`; false when they do not fit in guest memory.
    pub(crate) fn write(caller: &mut Caller<'_, VmData>, ptr: i32, bytes: &[u8]) -> bool {
        let Some(memory) = Self::memory(caller) else {
            return false;
        };
        let data = memory.data_mut(caller);
        match Self::range(data.len(), ptr, bytes.len() as u64) {
            Some(range) => {
                data[range].copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }

    pub(crate) fn write_u32(caller: &mut Caller<'_, VmData>, ptr: i32, value: u32) -> bool {
        Self::write(caller, ptr, &value.to_le_bytes())
    }

    pub(crate) fn write_u64(caller: &mut Caller<'_, VmData>, ptr: i32, value: u64) -> bool {
        Self::write(caller, ptr, &value.to_le_bytes())
    }

    /// Copies `bytes` into memory the guest allocates, and writes its address and length at
    /// `ptr_ptr` and `size_ptr`. Empty bytes are returned as address 0 and length 0 without
    /// allocating, as Envoy does. A trap in the guest's allocator ends the callback.
    pub(crate) fn return_bytes(
        caller: &mut Caller<'_, VmData>,
        bytes: &[u8],
        ptr_ptr: i32,
        size_ptr: i32,
    ) -> wasmtime::Result<Status> {
        let Ok(size) = u32::try_from(bytes.len()) else {
            return Ok(Status::InvalidMemoryAccess);
        };
        let address = if bytes.is_empty() {
            0
        } else {
            let Some(address) = Self::allocate(caller, size)? else {
                return Ok(Status::InvalidMemoryAccess);
            };
            if !Self::write(caller, address as i32, bytes) {
                return Ok(Status::InvalidMemoryAccess);
            }
            address
        };

        if Self::write_u32(caller, ptr_ptr, address) && Self::write_u32(caller, size_ptr, size) {
            Ok(Status::Ok)
        } else {
            Ok(Status::InvalidMemoryAccess)
        }
    }

    /// Calls the guest's allocator; `None` when it returns 0 (out of memory).
    fn allocate(caller: &mut Caller<'_, VmData>, size: u32) -> wasmtime::Result<Option<u32>> {
        let Some(allocator) = caller.data().abi.allocator.clone() else {
            return Ok(None);
        };
        let address = allocator.call(&mut *caller, size)?;
        Ok((address != 0).then_some(address))
    }
}
