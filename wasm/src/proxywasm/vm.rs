//! [`ProxyWasmVm`]: one instance of a plugin on one worker thread, and the callbacks the
//! filter makes into it.

use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Instance, Store, StoreLimitsBuilder, Trap, TypedFunc};

use super::abi::{DataAction, HeadersAction, TrailersAction};
use super::http::{CallEffects, HttpHost, Outcome};
use super::module::ProxyWasmModule;
use super::state::{AbiState, ContextState, VmData, ROOT_CONTEXT_ID};
use crate::engine::{deadline_ticks, engine};
use crate::host::HostCtx;
use crate::settings::FunctionSettings;
use crate::wasi::{ProcExit, WasiCtx};

/// Maximum stdout bytes one callback may write. The plugin's stdout is logged after every
/// callback, and a write past this fails with `EFBIG`.
const MAX_STDOUT_PER_CALL: usize = 1 << 20;

/// Error of one callback into the plugin. After any error but [`CallError::UnknownContext`]
/// the VM is broken: every later call returns [`CallError::Broken`], and the filter starts a
/// new VM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("the plugin ran past spec.runtime.timeout ({timeout:?}) and was stopped")]
    Timeout { timeout: Duration },
    #[error("the plugin trapped: {message}")]
    Trap { message: String },
    #[error("the VM failed in an earlier call; start a new one")]
    Broken,
    #[error("context {context_id} is not an open HTTP context of this VM")]
    UnknownContext { context_id: u32 },
}

/// Error of starting a VM: instantiating the module and running its start callbacks.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot instantiate the module: {message}")]
    Instantiate { message: String },
    #[error("{callback} failed: {source}")]
    Callback {
        callback: &'static str,
        #[source]
        source: CallError,
    },
    #[error(
        "proxy_on_vm_start returned false, so the plugin rejected its VM configuration; see \
         the plugin's log lines for the reason"
    )]
    VmStartRejected,
    #[error(
        "proxy_on_configure returned false, so the plugin rejected its configuration \
         ({size} bytes); see the plugin's log lines for the reason"
    )]
    ConfigureRejected { size: usize },
}

/// The plugin's callbacks; `None` for one it does not export, which then does nothing.
struct Callbacks {
    context_create: TypedFunc<(u32, u32), ()>,
    vm_start: Option<TypedFunc<(u32, u32), u32>>,
    configure: Option<TypedFunc<(u32, u32), u32>>,
    request_headers: Option<TypedFunc<(u32, u32, u32), u32>>,
    request_body: Option<TypedFunc<(u32, u32, u32), u32>>,
    request_trailers: Option<TypedFunc<(u32, u32), u32>>,
    response_headers: Option<TypedFunc<(u32, u32, u32), u32>>,
    response_body: Option<TypedFunc<(u32, u32, u32), u32>>,
    response_trailers: Option<TypedFunc<(u32, u32), u32>>,
    log: Option<TypedFunc<u32, ()>>,
    done: Option<TypedFunc<u32, u32>>,
    delete: Option<TypedFunc<u32, ()>>,
    tick: Option<TypedFunc<u32, ()>>,
}

impl Callbacks {
    fn find(instance: &Instance, store: &mut Store<VmData>) -> wasmtime::Result<Self> {
        fn optional<P, R>(
            instance: &Instance,
            store: &mut Store<VmData>,
            name: &str,
        ) -> wasmtime::Result<Option<TypedFunc<P, R>>>
        where
            P: wasmtime::WasmParams,
            R: wasmtime::WasmResults,
        {
            match instance.get_func(&mut *store, name) {
                Some(func) => Ok(Some(func.typed(&*store)?)),
                None => Ok(None),
            }
        }

        Ok(Self {
            context_create: instance.get_typed_func(&mut *store, "proxy_on_context_create")?,
            vm_start: optional(instance, store, "proxy_on_vm_start")?,
            configure: optional(instance, store, "proxy_on_configure")?,
            request_headers: optional(instance, store, "proxy_on_request_headers")?,
            request_body: optional(instance, store, "proxy_on_request_body")?,
            request_trailers: optional(instance, store, "proxy_on_request_trailers")?,
            response_headers: optional(instance, store, "proxy_on_response_headers")?,
            response_body: optional(instance, store, "proxy_on_response_body")?,
            response_trailers: optional(instance, store, "proxy_on_response_trailers")?,
            log: optional(instance, store, "proxy_on_log")?,
            done: optional(instance, store, "proxy_on_done")?,
            delete: optional(instance, store, "proxy_on_delete")?,
            tick: optional(instance, store, "proxy_on_tick")?,
        })
    }
}

/// One instance of a plugin, with its root context (id 1) started. It belongs to the thread
/// that created it: the filter keeps one per Envoy worker and runs every callback of that
/// worker's streams on it.
pub struct ProxyWasmVm {
    store: Store<VmData>,
    /// Shared so that a call can hold its callback while it borrows the VM mutably; cloning
    /// a `TypedFunc` instead would copy its registered type on every call.
    callbacks: Rc<Callbacks>,
    settings: Arc<FunctionSettings>,
    next_context_id: u32,
    broken: bool,
}

impl ProxyWasmVm {
    /// Instantiates the plugin, runs `_initialize` (or `_start`), creates the root context and
    /// calls `proxy_on_vm_start` and `proxy_on_configure`.
    pub fn start(module: &ProxyWasmModule) -> Result<Self, StartError> {
        let settings = module.settings.clone();
        let data = VmData {
            wasi: WasiCtx::new(
                &settings.revision,
                Vec::new(),
                &settings.env,
                Vec::new(),
                MAX_STDOUT_PER_CALL,
            ),
            host: HostCtx::new(settings.clone(), module.kv.clone(), Instant::now()),
            limits: StoreLimitsBuilder::new()
                .memory_size(settings.max_memory)
                .table_elements(crate::backend::MAX_TABLE_ELEMENTS)
                .instances(1)
                .build(),
            abi: AbiState::new(module.plugin.clone()),
            memory: None,
        };
        let mut store = Store::new(engine(), data);
        store.limiter(|data| &mut data.limits);
        store.epoch_deadline_trap();

        let instantiate_error = |error: wasmtime::Error| StartError::Instantiate {
            message: format!("{error:#}"),
        };
        store.set_epoch_deadline(deadline_ticks(settings.timeout));
        let instance = module
            .pre
            .instantiate(&mut store)
            .map_err(instantiate_error)?;
        let callbacks = Callbacks::find(&instance, &mut store).map_err(instantiate_error)?;
        let allocator = ["proxy_on_memory_allocate", "malloc"]
            .iter()
            .find_map(|name| instance.get_typed_func::<u32, u32>(&mut store, name).ok());
        store.data_mut().abi.allocator = allocator;
        store.data_mut().memory = instance.get_memory(&mut store, "memory");

        let mut vm = Self {
            store,
            callbacks: Rc::new(callbacks),
            settings,
            next_context_id: ROOT_CONTEXT_ID + 1,
            broken: false,
        };
        vm.initialize(&instance)?;
        vm.start_root_context()?;
        Ok(vm)
    }

    /// Runs the module's initialization: `_initialize` (and then `main`, if exported), or
    /// `_start` when there is no `_initialize`.
    fn initialize(&mut self, instance: &Instance) -> Result<(), StartError> {
        let initialize = instance.get_typed_func::<(), ()>(&mut self.store, "_initialize");
        let Ok(initialize) = initialize else {
            if let Ok(start) = instance.get_typed_func::<(), ()>(&mut self.store, "_start") {
                self.call(ROOT_CONTEXT_ID, None, |store| start.call(store, ()))
                    .map_err(|source| StartError::Callback {
                        callback: "_start",
                        source,
                    })?;
            }
            return Ok(());
        };

        self.call(ROOT_CONTEXT_ID, None, |store| initialize.call(store, ()))
            .map_err(|source| StartError::Callback {
                callback: "_initialize",
                source,
            })?;
        if let Ok(main) = instance.get_typed_func::<(u32, u32), u32>(&mut self.store, "main") {
            self.call(ROOT_CONTEXT_ID, None, |store| main.call(store, (0, 0)))
                .map_err(|source| StartError::Callback {
                    callback: "main",
                    source,
                })?;
        }
        Ok(())
    }

    fn start_root_context(&mut self) -> Result<(), StartError> {
        let callback_error =
            |callback: &'static str| move |source| StartError::Callback { callback, source };
        self.store
            .data_mut()
            .abi
            .contexts
            .insert(ROOT_CONTEXT_ID, ContextState::default());
        let callbacks = Rc::clone(&self.callbacks);
        let create = &callbacks.context_create;
        self.call(ROOT_CONTEXT_ID, None, |store| {
            create.call(store, (ROOT_CONTEXT_ID, 0))
        })
        .map_err(callback_error("proxy_on_context_create"))?;

        let plugin = self.store.data().abi.plugin.clone();
        let callbacks = Rc::clone(&self.callbacks);
        if let Some(vm_start) = callbacks.vm_start.as_ref() {
            let size = len_u32(plugin.vm_configuration.len());
            let (started, _) = self
                .call(ROOT_CONTEXT_ID, None, |store| {
                    vm_start.call(store, (ROOT_CONTEXT_ID, size))
                })
                .map_err(callback_error("proxy_on_vm_start"))?;
            if started == 0 {
                return Err(StartError::VmStartRejected);
            }
        }

        let callbacks = Rc::clone(&self.callbacks);
        if let Some(configure) = callbacks.configure.as_ref() {
            let size = plugin.plugin_configuration.len();
            let (configured, _) = self
                .call(ROOT_CONTEXT_ID, None, |store| {
                    store.data_mut().abi.configuring = true;
                    configure.call(store, (ROOT_CONTEXT_ID, len_u32(size)))
                })
                .map_err(callback_error("proxy_on_configure"))?;
            if configured == 0 {
                return Err(StartError::ConfigureRejected { size });
            }
        }
        Ok(())
    }

    /// True after a callback failed; the filter then drops this VM and starts a new one.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Runs `invoke` as one callback on `context_id`: with the settings' timeout, with `host`
    /// reachable from host functions, and with the plugin's output logged afterwards.
    fn call<R>(
        &mut self,
        context_id: u32,
        host: Option<&mut dyn HttpHost>,
        invoke: impl FnOnce(&mut Store<VmData>) -> wasmtime::Result<R>,
    ) -> Result<(R, CallEffects), CallError> {
        if self.broken {
            return Err(CallError::Broken);
        }
        let timeout = self.settings.timeout;
        self.store.set_epoch_deadline(deadline_ticks(timeout));
        let data = self.store.data_mut();
        data.host.set_deadline(Instant::now() + timeout);
        data.abi.begin_call(context_id, host.map(erase_lifetime));

        let result = panic::catch_unwind(AssertUnwindSafe(|| invoke(&mut self.store)));

        let effects = self.store.data_mut().abi.end_call();
        self.log_output();
        match result {
            Ok(Ok(value)) => Ok((value, effects)),
            Ok(Err(error)) => {
                self.broken = true;
                let error = classify(error, timeout);
                tracing::warn!(revision = %self.settings.revision, context_id, "{error}");
                Err(error)
            }
            Err(payload) => {
                self.broken = true;
                panic::resume_unwind(payload)
            }
        }
    }

    /// Logs what the plugin wrote to stdout and stderr during the last callback.
    fn log_output(&mut self) {
        let wasi = &mut self.store.data_mut().wasi;
        wasi.flush_stderr();
        let Some(stdout) = wasi.take_stdout() else {
            tracing::warn!(
                revision = %self.settings.revision,
                "plugin stdout exceeded {MAX_STDOUT_PER_CALL} bytes in one callback"
            );
            return;
        };
        if stdout.is_empty() {
            return;
        }
        for line in String::from_utf8_lossy(&stdout).lines() {
            tracing::info!(revision = %self.settings.revision, "plugin stdout: {line}");
        }
    }

    fn check_http_context(&self, context_id: u32) -> Result<(), CallError> {
        let open = context_id != ROOT_CONTEXT_ID
            && self.store.data().abi.contexts.contains_key(&context_id);
        if open {
            Ok(())
        } else {
            Err(CallError::UnknownContext { context_id })
        }
    }

    /// Creates an HTTP context (`proxy_on_context_create` with the root as parent) and returns
    /// its id, which the stream's callbacks take.
    pub fn new_http_context(&mut self) -> Result<u32, CallError> {
        let context_id = self.next_context_id;
        self.next_context_id = self
            .next_context_id
            .checked_add(1)
            .unwrap_or(ROOT_CONTEXT_ID + 1);
        self.store
            .data_mut()
            .abi
            .contexts
            .insert(context_id, ContextState::default());
        let callbacks = Rc::clone(&self.callbacks);
        let create = &callbacks.context_create;
        self.call(context_id, None, |store| {
            create.call(store, (context_id, ROOT_CONTEXT_ID))
        })?;
        Ok(context_id)
    }

    /// Calls a stream callback taking (context, count or size, end of stream), or returns 0
    /// (continue) when the plugin does not export it.
    fn stream_call(
        &mut self,
        callback: Option<&TypedFunc<(u32, u32, u32), u32>>,
        context_id: u32,
        host: &mut dyn HttpHost,
        size: usize,
        end_of_stream: bool,
    ) -> Result<(u32, CallEffects), CallError> {
        self.check_http_context(context_id)?;
        let Some(callback) = callback else {
            return Ok((0, CallEffects::default()));
        };
        let args = (context_id, len_u32(size), u32::from(end_of_stream));
        self.call(context_id, Some(host), |store| callback.call(store, args))
    }

    fn trailers_call(
        &mut self,
        callback: Option<&TypedFunc<(u32, u32), u32>>,
        context_id: u32,
        host: &mut dyn HttpHost,
        num_trailers: usize,
    ) -> Result<(u32, CallEffects), CallError> {
        self.check_http_context(context_id)?;
        let Some(callback) = callback else {
            return Ok((0, CallEffects::default()));
        };
        let args = (context_id, len_u32(num_trailers));
        self.call(context_id, Some(host), |store| callback.call(store, args))
    }

    /// `proxy_on_request_headers`.
    pub fn on_request_headers(
        &mut self,
        context_id: u32,
        host: &mut dyn HttpHost,
        num_headers: usize,
        end_of_stream: bool,
    ) -> Result<Outcome<HeadersAction>, CallError> {
        let callbacks = Rc::clone(&self.callbacks);
        let callback = callbacks.request_headers.as_ref();
        let (result, effects) =
            self.stream_call(callback, context_id, host, num_headers, end_of_stream)?;
        let action = HeadersAction::from_result(result, effects.local_reply.is_some());
        Ok(effects.into_outcome(action))
    }

    /// `proxy_on_request_body`. `body_size` is the length of the body [`HttpHost::body`] returns.
    pub fn on_request_body(
        &mut self,
        context_id: u32,
        host: &mut dyn HttpHost,
        body_size: usize,
        end_of_stream: bool,
    ) -> Result<Outcome<DataAction>, CallError> {
        let callbacks = Rc::clone(&self.callbacks);
        let callback = callbacks.request_body.as_ref();
        let (result, effects) =
            self.stream_call(callback, context_id, host, body_size, end_of_stream)?;
        let action = DataAction::from_result(result, effects.local_reply.is_some());
        Ok(effects.into_outcome(action))
    }

    /// `proxy_on_request_trailers`.
    pub fn on_request_trailers(
        &mut self,
        context_id: u32,
        host: &mut dyn HttpHost,
        num_trailers: usize,
    ) -> Result<Outcome<TrailersAction>, CallError> {
        let callbacks = Rc::clone(&self.callbacks);
        let callback = callbacks.request_trailers.as_ref();
        let (result, effects) = self.trailers_call(callback, context_id, host, num_trailers)?;
        let action = TrailersAction::from_result(result, effects.local_reply.is_some());
        Ok(effects.into_outcome(action))
    }

    /// `proxy_on_response_headers`.
    pub fn on_response_headers(
        &mut self,
        context_id: u32,
        host: &mut dyn HttpHost,
        num_headers: usize,
        end_of_stream: bool,
    ) -> Result<Outcome<HeadersAction>, CallError> {
        let callbacks = Rc::clone(&self.callbacks);
        let callback = callbacks.response_headers.as_ref();
        let (result, effects) =
            self.stream_call(callback, context_id, host, num_headers, end_of_stream)?;
        let action = HeadersAction::from_result(result, effects.local_reply.is_some());
        Ok(effects.into_outcome(action))
    }

    /// `proxy_on_response_body`. `body_size` is the length of the body [`HttpHost::body`] returns.
    pub fn on_response_body(
        &mut self,
        context_id: u32,
        host: &mut dyn HttpHost,
        body_size: usize,
        end_of_stream: bool,
    ) -> Result<Outcome<DataAction>, CallError> {
        let callbacks = Rc::clone(&self.callbacks);
        let callback = callbacks.response_body.as_ref();
        let (result, effects) =
            self.stream_call(callback, context_id, host, body_size, end_of_stream)?;
        let action = DataAction::from_result(result, effects.local_reply.is_some());
        Ok(effects.into_outcome(action))
    }

    /// `proxy_on_response_trailers`.
    pub fn on_response_trailers(
        &mut self,
        context_id: u32,
        host: &mut dyn HttpHost,
        num_trailers: usize,
    ) -> Result<Outcome<TrailersAction>, CallError> {
        let callbacks = Rc::clone(&self.callbacks);
        let callback = callbacks.response_trailers.as_ref();
        let (result, effects) = self.trailers_call(callback, context_id, host, num_trailers)?;
        let action = TrailersAction::from_result(result, effects.local_reply.is_some());
        Ok(effects.into_outcome(action))
    }

    /// `proxy_on_log`: the plugin may read the stream's headers one last time.
    pub fn on_log(&mut self, context_id: u32, host: &mut dyn HttpHost) -> Result<(), CallError> {
        self.check_http_context(context_id)?;
        let callbacks = Rc::clone(&self.callbacks);
        let Some(log) = callbacks.log.as_ref() else {
            return Ok(());
        };
        self.call(context_id, Some(host), |store| log.call(store, context_id))?;
        Ok(())
    }

    /// `proxy_on_done`. Returns the plugin's result: false means the plugin calls `proxy_done`
    /// later, which this host records but does not wait for.
    pub fn on_done(&mut self, context_id: u32) -> Result<bool, CallError> {
        self.check_http_context(context_id)?;
        let callbacks = Rc::clone(&self.callbacks);
        let Some(done) = callbacks.done.as_ref() else {
            return Ok(true);
        };
        let (finished, _) = self.call(context_id, None, |store| done.call(store, context_id))?;
        if finished == 0 {
            if let Some(context) = self.store.data_mut().abi.contexts.get_mut(&context_id) {
                context.done_pending = true;
            }
        }
        Ok(finished != 0)
    }

    /// `proxy_on_delete`, after which the context id is unknown to the VM.
    pub fn on_delete(&mut self, context_id: u32) -> Result<(), CallError> {
        self.check_http_context(context_id)?;
        let callbacks = Rc::clone(&self.callbacks);
        let result = match callbacks.delete.as_ref() {
            Some(delete) => self
                .call(context_id, None, |store| delete.call(store, context_id))
                .map(|_| ()),
            None => Ok(()),
        };
        self.store.data_mut().abi.contexts.remove(&context_id);
        result
    }

    /// Ends a stream: `proxy_on_done`, then `proxy_on_delete`. A stream whose plugin logs
    /// calls [`ProxyWasmVm::on_done`], [`ProxyWasmVm::on_log`] and
    /// [`ProxyWasmVm::on_delete`] itself, in that order, as the ABI specifies.
    pub fn finish(&mut self, context_id: u32) -> Result<(), CallError> {
        let done = self.on_done(context_id);
        let deleted = self.on_delete(context_id);
        done.and(deleted)
    }

    /// Returns the timer period the plugin set with `proxy_set_tick_period_milliseconds`.
    pub fn tick_period(&self) -> Option<Duration> {
        self.store.data().abi.tick_period
    }

    /// `proxy_on_tick` on the root context.
    pub fn on_tick(&mut self) -> Result<(), CallError> {
        let callbacks = Rc::clone(&self.callbacks);
        let Some(tick) = callbacks.tick.as_ref() else {
            return Ok(());
        };
        self.call(ROOT_CONTEXT_ID, None, |store| {
            tick.call(store, ROOT_CONTEXT_ID)
        })?;
        Ok(())
    }
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Turns the error of a wasm call into a [`CallError`].
fn classify(error: wasmtime::Error, timeout: Duration) -> CallError {
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return CallError::Timeout { timeout };
    }
    if let Some(exit) = error.downcast_ref::<ProcExit>() {
        return CallError::Trap {
            message: exit.to_string(),
        };
    }
    CallError::Trap {
        message: format!("{error:#}"),
    }
}

/// Drops the lifetime of a host borrow so the store can hold it during one callback.
fn erase_lifetime<'a>(host: &'a mut (dyn HttpHost + 'a)) -> NonNull<dyn HttpHost> {
    let pointer: NonNull<dyn HttpHost + 'a> = NonNull::from(host);
    // SAFETY: only the trait object's lifetime bound changes, not its layout. `call` keeps the
    // borrow alive and unused for the whole callback and clears the pointer (`end_call`)
    // before it returns, also when the callback panics, so it is never used after 'a ends.
    unsafe { std::mem::transmute::<NonNull<dyn HttpHost + 'a>, NonNull<dyn HttpHost>>(pointer) }
}
