//! Seeded random streams: random body shapes, plugin replies (synchronous, or Running and a
//! Continue from a goroutine) and event timing, checked against what must hold whatever a
//! plugin returns, as long as it never changes the body and always continues in the end.

use crate::abi::body_status;
use crate::gohost::types::{destroy_reason, go_status};
use crate::shared::DECODE;
use crate::testing::envoy;
use crate::testing::go::{self, Act, Phase, Reply};
use crate::testing::harness::Harness;

const SEEDS: u64 = 400;
/// Upper bound on goroutine and scheduler rounds after the last Envoy event.
const MAX_SETTLE_ROUNDS: usize = 64;

const REQUEST: &[(&str, &str)] = &[
    (":method", "POST"),
    (":path", "/random"),
    (":authority", "example.test"),
    (":scheme", "http"),
];

const TRAILERS: &[(&str, &str)] = &[("x-checksum", "abc123")];

/// A small xorshift64* generator, so a failing seed replays exactly.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, bound: u64) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
    }
}

/// A status a well-behaved plugin may return for the phase; trailers only continue.
fn random_status(rng: &mut Rng, phase: Phase) -> u64 {
    let choices = [
        go_status::CONTINUE,
        go_status::STOP_AND_BUFFER,
        go_status::STOP_AND_BUFFER_WATERMARK,
    ];
    if phase == Phase::Trailers {
        return go_status::CONTINUE;
    }
    choices[rng.below(3) as usize]
}

fn random_reply(rng: &mut Rng, phase: Phase) -> Reply {
    let status = random_status(rng, phase);
    if rng.below(2) == 0 {
        Reply::status(status)
    } else {
        Reply::status(go_status::RUNNING).later([Act::Continue(status)])
    }
}

/// Lets Go and the worker run between two Envoy events, as timing allows.
fn random_pause(h: &Harness, rng: &mut Rng) {
    let run_goroutine = rng.below(2) == 0;
    let run_scheduled = rng.below(2) == 0;
    if run_goroutine && go::pending_goroutines() > 0 {
        go::run_goroutine();
    }
    if run_scheduled {
        h.run_scheduled();
    }
}

/// Runs queued goroutines and scheduler events until nothing is left.
fn settle(h: &Harness) {
    for _ in 0..MAX_SETTLE_ROUNDS {
        let pending = go::pending_goroutines() > 0;
        if pending {
            go::run_goroutine();
        }
        let delivered = h.run_scheduled();
        if !pending && delivered == 0 {
            return;
        }
    }
}

fn run_seed(seed: u64) {
    let mut rng = Rng::new(seed);
    let mut reply_rng = Rng::new(seed ^ 0xA5A5_A5A5);
    let h = Harness::new();
    go::script_fn(Box::new(move |phase, _| {
        random_reply(&mut reply_rng, phase)
    }));

    let chunk_count = rng.below(4);
    let trailers = rng.below(2) == 0;
    let chunks: Vec<Vec<u8>> = (0..chunk_count)
        .map(|index| format!("<{seed}:{index}>").into_bytes())
        .collect();

    h.request_headers(REQUEST, chunks.is_empty() && !trailers);
    random_pause(&h, &mut rng);
    for (index, chunk) in chunks.iter().enumerate() {
        let last = index + 1 == chunks.len() && !trailers;
        let status = h.request_body(chunk, last);
        assert_ne!(status, body_status::STOP_ITERATION_NO_BUFFER, "seed {seed}");
        random_pause(&h, &mut rng);
    }
    if trailers {
        h.request_trailers(TRAILERS);
        random_pause(&h, &mut rng);
    }
    settle(&h);

    let body = chunks.concat();
    let calls = go::calls();
    let seen: Vec<u8> = calls.iter().flat_map(|call| call.data.clone()).collect();
    let ends = calls.iter().filter(|call| call.end_stream).count();
    let fake_state = envoy::with(|fake| {
        let dir = &fake.dirs[DECODE];
        (
            dir.headers_forwarded,
            dir.forwarded_body.clone(),
            dir.trailers_forwarded,
            fake.responses().len(),
        )
    });
    let (headers_forwarded, forwarded, trailers_forwarded, responses) = fake_state;

    assert_eq!(h.violations(), Vec::<String>::new(), "seed {seed}");
    assert_eq!(responses, 0, "seed {seed}: a local reply was sent");
    assert_eq!(calls[0].phase, Phase::Headers, "seed {seed}");
    assert_eq!(seen, body, "seed {seed}: body bytes Go saw");
    assert_eq!(ends, 1, "seed {seed}: calls that carried end_stream");
    assert!(headers_forwarded, "seed {seed}: headers forwarded");
    assert_eq!(forwarded, body, "seed {seed}: body forwarded");
    assert_eq!(
        trailers_forwarded, trailers,
        "seed {seed}: trailers forwarded"
    );

    h.destroy();
    let destroys = go::destroys();
    assert_eq!(destroys.len(), 1, "seed {seed}");
    assert_eq!(destroys[0].1, destroy_reason::NORMAL, "seed {seed}");
}

#[test]
fn random_streams_complete() {
    for seed in 0..SEEDS {
        run_seed(seed);
    }
}
