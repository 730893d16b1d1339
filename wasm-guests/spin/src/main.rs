//! Backend test function that never returns, so only edgefn's timeout (`spec.runtime.timeout`,
//! enforced by wasmtime epoch interruption) can stop it.

fn main() {
    // Unbounded on purpose. `black_box` hides the counter from the optimizer, which could
    // otherwise prove the loop does nothing observable.
    let mut iterations: u64 = 0;
    loop {
        iterations = std::hint::black_box(iterations.wrapping_add(1));
    }
}
