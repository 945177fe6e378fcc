//! AFL++ target: `onehttps::fuzzing::host_name` (see src/fuzzing.rs).
fn main() {
    afl::fuzz!(|data: &[u8]| onehttps::fuzzing::host_name(data));
}
