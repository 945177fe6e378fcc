//! AFL++ target: `onehttps::fuzzing::config` (see src/fuzzing.rs).
fn main() {
    afl::fuzz!(|data: &[u8]| onehttps::fuzzing::config(data));
}
