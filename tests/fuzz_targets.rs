//! A short run of every fuzz target in each test run, without instrumentation: the
//! committed corpus (`fuzz/corpus/<target>/`, AFL++ findings included) and then mutations
//! of it from a fixed seed. Long, coverage-guided runs are `scripts/fuzz` (AFL++). A target
//! that panics fails this test with the input that did it.

use std::path::Path;

/// Mutated inputs per target per run.
const MUTATIONS: usize = 20_000;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: [&[u8]; 12] = [
    b"\0",
    b"\xff",
    b"-----BEGIN ",
    b"-----END ",
    b"\r\n",
    b":",
    b"\"",
    b"[[site]]\n",
    b"*.",
    b"xn--",
    b"%",
    b"\xf0\x9f\x92\xa9",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(8) {
        match rng.below(5) {
            0 if !data.is_empty() => {
                let at = rng.below(data.len());
                data[at] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let at = rng.below(data.len());
                let len = rng.below(64).min(data.len() - at);
                data.drain(at..at + len);
            }
            2 => {
                let at = rng.below(data.len() + 1);
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(at..at, piece.iter().copied());
            }
            3 if !data.is_empty() => {
                let from = rng.below(data.len());
                let len = rng.below(256).min(data.len() - from);
                let at = rng.below(data.len() + 1);
                let copy: Vec<u8> = data[from..from + len].to_vec();
                data.splice(at..at, copy);
            }
            _ => {
                let at = rng.below(data.len() + 1);
                data.insert(at, rng.next() as u8);
            }
        }
    }
    data
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    inputs.push(Vec::new());
    inputs
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_mutations() {
    for (name, target) in onehttps::fuzzing::TARGETS {
        let seeds = corpus(name);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
        for seed in &seeds {
            run(name, target, seed);
        }
        for _ in 0..MUTATIONS {
            let seed = &seeds[rng.below(seeds.len())];
            let input = mutate(&mut rng, seed);
            run(name, target, &input);
        }
    }
}

fn run(name: &str, target: fn(&[u8]), input: &[u8]) {
    if std::panic::catch_unwind(|| target(input)).is_err() {
        panic!(
            "fuzz target {name} panicked on {} bytes: {:?}",
            input.len(),
            String::from_utf8_lossy(input)
        );
    }
}
