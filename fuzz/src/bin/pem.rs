//! AFL++ target: `onehttps::fuzzing::pem` (see src/fuzzing.rs).
fn main() {
    afl::fuzz!(|data: &[u8]| onehttps::fuzzing::pem(data));
}
