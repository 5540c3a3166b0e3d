//! The wasmtime engine, and one partner's component ready to instantiate.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, ComponentExportIndex, HasSelf, Instance, InstancePre, Linker, TypedFunc};
use wasmtime::error::Context as _;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline,
};

use super::cache;
use super::error::ComponentError;
use super::host::GuestState;
use super::limits::Limits;
use super::needs::PoolNeeds;
use super::wit::{Event, HANDLER_INTERFACE, Partner, Plan};

/// How often the epoch ticks. A guest running wasm yields to the executor once per
/// tick, so this is both the longest stretch a call holds a worker thread and the
/// granularity of deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Linear memory a freed pool slot keeps mapped and resets in place for the next instance.
/// Without it every instance starts on zero pages and pays a page fault for each page it
/// touches, which was most of a call's cost for small components. 2 MiB covers what a Rust
/// guest touches: its stack grows down from 1 MiB, and its data and heap sit above that (with
/// 512 KiB, the kept part was the stack's unused bottom). Bounded per slot, and the pool keeps
/// at most `max_unused_warm_slots` (100) idle slots warm.
const KEEP_RESIDENT_BYTES: usize = 2 << 20;
/// A fault at or above this wasm address is a stack pointer that wrapped below zero: partners'
/// memory caps sit far below 4 GiB (256 MiB by default), and a stack frame is far smaller
/// than 1 MiB.
const WRAPPED_STACK_FLOOR: u64 = (4 << 30) - (1 << 20);

/// Engine-wide settings, shared by every partner.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled artifacts are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Instances that may be alive at once across all partners (pool size).
    pub max_instances: u32,
    /// The largest memory cap any partner may have, in bytes.
    pub max_memory_bytes: usize,
    /// Turn on fuel metering (needed when any partner sets `limits.fuel`).
    pub fuel: bool,
    /// What one component instance may take from the pool: the pool holds this for each of
    /// `max_instances` (see [`PoolNeeds::with_headroom`]).
    pub pool: PoolNeeds,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_instances: 1_000,
            max_memory_bytes: 256 << 20,
            fuel: false,
            pool: PoolNeeds::FLOOR,
        }
    }
}

/// The shared wasmtime engine, linker and epoch ticker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<GuestState>,
    options: RuntimeOptions,
    ticker_stop: Arc<AtomicBool>,
    /// Components loaded and still held by a partner, by content hash: partners running the
    /// same build share its code and its memory image (for a Python component, about 16 MiB
    /// each) instead of loading it once per partner.
    loaded: Mutex<HashMap<String, Weak<Component>>>,
}

impl Runtime {
    /// Builds the engine with the pooling allocator and starts the epoch ticker.
    pub fn new(options: RuntimeOptions) -> anyhow::Result<Self> {
        let (instances, needs) = (options.max_instances, options.pool);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(needs.core_instances))
            .max_core_instances_per_component(needs.core_instances)
            .total_memories(instances.saturating_mul(needs.memories))
            .max_memories_per_component(needs.memories)
            .total_tables(instances.saturating_mul(needs.tables))
            .max_tables_per_component(needs.tables)
            .table_elements(usize::try_from(needs.table_elements).unwrap_or(usize::MAX))
            .total_stacks(instances)
            .max_memory_size(options.max_memory_bytes)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES / 8)
            // Resets the kept pages with one memset rather than asking the kernel which ones the
            // instance dirtied (`pagemap_scan`): for a partner's small memory the scan cost more
            // than it saved (BENCHMARKS.md, "Component call after the async rework").
            .pagemap_scan(Enabled::No);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(options.fuel)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).context("creating the wasmtime engine")?;

        let mut linker = Linker::new(&engine);
        // Async WASI: a guest blocked in `poll` (a sleep, say) is a pending future that
        // the call's deadline can drop, where a sync host call could not be interrupted.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).context("linking WASI")?;
        Partner::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .context("linking the partner world's imports")?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), ticker_stop.clone())?;
        Ok(Self {
            engine,
            linker,
            options,
            ticker_stop,
            loaded: Mutex::default(),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles (or loads from cache) and links one partner's component.
    ///
    /// Fails with a message naming the partner if the bytes are not a component
    /// or do not implement the `partner` world.
    pub fn load(
        &self,
        partner: &str,
        wasm: &[u8],
        limits: Limits,
        config: BTreeMap<String, String>,
    ) -> anyhow::Result<PartnerComponent> {
        if limits.memory_bytes > self.options.max_memory_bytes {
            anyhow::bail!(
                "partner `{partner}`: limits.memory-bytes = {} is above the host's maximum of {} bytes",
                limits.memory_bytes,
                self.options.max_memory_bytes
            );
        }
        if limits.fuel.is_some() && !self.options.fuel {
            anyhow::bail!("partner `{partner}`: limits.fuel is set but the runtime was built without fuel metering");
        }
        // An unreadable binary is left to the compiler, which says what is wrong with it.
        if let Some(over) = PoolNeeds::of(wasm)
            .ok()
            .and_then(|needs| needs.exceeds(&self.options.pool))
        {
            anyhow::bail!(
                "partner `{partner}`: the component needs {over}; the host sized its instance pool for \
                 the components it started with, so restart it to run this one"
            );
        }
        let version = cache::content_hash(wasm);
        let component = self
            .compiled(wasm, &version)
            .map_err(|err| err.context(format!("partner `{partner}`: not a valid WebAssembly component")))?;
        let not_the_world = || {
            format!(
                "partner `{partner}`: the component does not implement the `sagahost:partner/partner` world \
                 (it must export `{HANDLER_INTERFACE}` and import only `log`, `config` and WASI 0.2: files, sockets and the environment link but are empty or denied)"
            )
        };
        let pre = self.linker.instantiate_pre(&component).with_context(not_the_world)?;
        let handle_export = component
            .get_export_index(None, HANDLER_INTERFACE)
            .and_then(|interface| component.get_export_index(Some(&interface), "handle"))
            .with_context(not_the_world)?;
        let info = ComponentInfo::describe(&self.engine, &component, wasm.len(), version);
        Ok(PartnerComponent {
            _compiled: component,
            partner: partner.into(),
            engine: self.engine.clone(),
            pre,
            limits,
            config: Arc::new(config),
            info,
            consumes_fuel: self.options.fuel,
            handle_export,
            handle_typechecked: AtomicBool::new(false),
        })
    }
}

impl Runtime {
    /// How many distinct builds (content hashes) partners hold now.
    pub fn builds_loaded(&self) -> usize {
        let loaded = self.loaded.lock().expect("not poisoned");
        loaded.values().filter(|component| component.strong_count() > 0).count()
    }

    /// The compiled component of `wasm` (content hash `version`): the one a partner already
    /// holds, or compiled (or loaded from the artifact cache) now.
    fn compiled(&self, wasm: &[u8], version: &str) -> anyhow::Result<Arc<Component>> {
        let mut loaded = self.loaded.lock().expect("not poisoned");
        if let Some(component) = loaded.get(version).and_then(Weak::upgrade) {
            return Ok(component);
        }
        loaded.retain(|_, component| component.strong_count() > 0);
        // Compiled under the lock: a second partner with the same build waits for this one
        // rather than compiling it again.
        let component = Arc::new(cache::compile_cached(
            &self.engine,
            wasm,
            version,
            self.options.cache_dir.as_deref(),
        )?);
        loaded.insert(version.to_string(), Arc::downgrade(&component));
        Ok(component)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    thread::Builder::new()
        .name("sagahost-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .context("starting the epoch ticker thread")?;
    Ok(())
}

/// What a component file is: its identity, size, imports and exports.
#[derive(Debug, Clone)]
pub struct ComponentInfo {
    /// Hex SHA-256 of the `.wasm` bytes.
    pub version: String,
    /// Size of the `.wasm` file in bytes.
    pub size: usize,
    /// Imported interface names.
    pub imports: Vec<String>,
    /// Exported interface names.
    pub exports: Vec<String>,
}

impl ComponentInfo {
    fn describe(engine: &Engine, component: &Component, size: usize, version: String) -> Self {
        let ty = component.component_type();
        Self {
            version,
            size,
            imports: ty.imports(engine).map(|(name, _)| name.to_string()).collect(),
            exports: ty.exports(engine).map(|(name, _)| name.to_string()).collect(),
        }
    }
}

/// One partner's component, compiled and linked, ready to handle events.
pub struct PartnerComponent {
    /// Keeps the shared compiled component listed in [`Runtime`]'s `loaded` while in use.
    _compiled: Arc<Component>,
    partner: Arc<str>,
    engine: Engine,
    pre: InstancePre<GuestState>,
    limits: Limits,
    config: Arc<BTreeMap<String, String>>,
    info: ComponentInfo,
    consumes_fuel: bool,
    /// Where `handle` is among the component's exports.
    handle_export: ComponentExportIndex,
    /// Whether `handle`'s signature was checked, on this component's first call.
    handle_typechecked: AtomicBool,
}

/// The signature of the `handle` export.
type HandleFunc<'a> = TypedFunc<(&'a Event,), (Result<Plan, String>,)>;

impl PartnerComponent {
    /// The partner this component belongs to.
    pub fn partner(&self) -> &str {
        &self.partner
    }

    /// Identity, size, imports and exports of the component.
    pub fn info(&self) -> &ComponentInfo {
        &self.info
    }

    /// The limits each call runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Runs `handle(event)` in a fresh instance under the partner's limits.
    ///
    /// Ends by the deadline whatever the guest does: wasm code yields to the
    /// executor every epoch tick and traps once the deadline has passed, and a
    /// guest waiting in a WASI call (a sleep, a poll) is dropped with its
    /// instance when the deadline's timer fires. Either way the worker thread is
    /// free again. `message_id` tags the guest's log lines.
    pub async fn handle(&self, message_id: &str, event: &Event) -> Result<Plan, ComponentError> {
        let deadline = self.limits.deadline();
        let state = GuestState::new(
            self.partner.clone(),
            message_id.into(),
            self.config.clone(),
            self.limits.memory_bytes,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        let ends_at = Instant::now() + deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= ends_at {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        if self.consumes_fuel {
            let _ = store.set_fuel(self.limits.fuel.unwrap_or(u64::MAX));
        }

        let run = async {
            let instance = self
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|err| (err, true))?;
            let handle = self.handle_func(&mut store, instance).map_err(|err| (err, true))?;
            let (returned,) = handle
                .call_async(&mut store, (event,))
                .await
                .map_err(|err| (err, false))?;
            Ok(returned)
        };
        // The timer is one tick late on purpose: a guest in wasm traps on the tick
        // past its deadline, and the trap says more than a dropped future.
        let result = tokio::time::timeout(deadline + EPOCH_TICK, run).await;
        store.data().flush_stdio();
        let returned = match result {
            Err(_elapsed) => return Err(self.deadline_exceeded()),
            Ok(Err((err, instantiating))) => return Err(self.classify(&store, err, instantiating)),
            Ok(Ok(returned)) => returned,
        };
        returned.map_err(|message| ComponentError::Returned {
            partner: self.partner.to_string(),
            message,
        })
    }

    /// The instance's `handle` export, type-checked on this component's first call only: the
    /// check walks the whole WIT type of `event` (a tenth of a call), and an instance of the
    /// same component, linked by the same linker, always has the same type.
    fn handle_func<'a>(&self, store: &mut Store<GuestState>, instance: Instance) -> wasmtime::Result<HandleFunc<'a>> {
        let func = instance
            .get_func(&mut *store, self.handle_export)
            .context("the component has no `handle` export")?;
        if self.handle_typechecked.load(Ordering::Acquire) {
            // SAFETY: `func.typed` accepted this signature for an instance of the same component,
            // and the type of a component's export does not change between its instances.
            return Ok(unsafe { HandleFunc::new_unchecked(func) });
        }
        let typed = func.typed(&*store)?;
        self.handle_typechecked.store(true, Ordering::Release);
        Ok(typed)
    }

    fn deadline_exceeded(&self) -> ComponentError {
        ComponentError::DeadlineExceeded {
            partner: self.partner.to_string(),
            deadline: self.limits.deadline(),
        }
    }

    /// Turns a wasmtime error into the typed failure it stands for.
    fn classify(&self, store: &Store<GuestState>, err: wasmtime::Error, instantiating: bool) -> ComponentError {
        let partner = self.partner.to_string();
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => self.deadline_exceeded(),
            Some(Trap::OutOfFuel) => ComponentError::FuelExhausted {
                partner,
                fuel: self.limits.fuel.unwrap_or(u64::MAX),
            },
            Some(Trap::StackOverflow) => ComponentError::StackOverflow { partner },
            Some(Trap::MemoryOutOfBounds) if faulted_below_zero(&err) => ComponentError::StackOverflow { partner },
            _ if store.data().limiter.denied => ComponentError::MemoryLimit {
                partner,
                limit_bytes: self.limits.memory_bytes,
            },
            _ if instantiating => ComponentError::Instantiate {
                partner,
                detail: format!("{err:#}"),
            },
            _ => ComponentError::Trap {
                partner,
                detail: trap_detail(store, &err),
            },
        }
    }
}

/// Whether an out-of-bounds access hit the top of the 32-bit address space, where a guest's
/// stack pointer lands when the stack (at the bottom of linear memory, as Rust and C lay it
/// out) overflows and wraps below zero. wasmtime names the address only in the error's text.
fn faulted_below_zero(err: &wasmtime::Error) -> bool {
    const MARKER: &str = "memory fault at wasm address 0x";
    let text = format!("{err:#}");
    let Some((_, rest)) = text.split_once(MARKER) else {
        return false;
    };
    let digits: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    u64::from_str_radix(&digits, 16).is_ok_and(|address| address >= WRAPPED_STACK_FLOOR)
}

/// The trap message plus the tail of the guest's stderr (where a Rust panic
/// message lands), so the operator sees why the guest gave up.
fn trap_detail(store: &Store<GuestState>, err: &wasmtime::Error) -> String {
    const MAX_STDERR_TAIL: usize = 1024;
    let trap = err
        .downcast_ref::<Trap>()
        .map_or_else(|| format!("{err:#}"), |t| t.to_string());
    let stderr = store.data().stderr.contents();
    let text = String::from_utf8_lossy(&stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" ");
    if tail.is_empty() {
        return trap;
    }
    let start = tail.len().saturating_sub(MAX_STDERR_TAIL);
    let start = (start..tail.len())
        .find(|&i| tail.is_char_boundary(i))
        .unwrap_or(tail.len());
    format!("{trap} (guest stderr: {})", &tail[start..])
}
