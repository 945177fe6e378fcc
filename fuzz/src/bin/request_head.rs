//! AFL++ target: `onehttps::fuzzing::request_head` (see src/fuzzing.rs).
fn main() {
    afl::fuzz!(|data: &[u8]| onehttps::fuzzing::request_head(data));
}
