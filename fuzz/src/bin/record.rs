//! AFL++ target: `onehttps::fuzzing::record` (see src/fuzzing.rs).
fn main() {
    afl::fuzz!(|data: &[u8]| onehttps::fuzzing::record(data));
}
