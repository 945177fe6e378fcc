//! AFL++ target: `onehttps::fuzzing::admin_json` (see src/fuzzing.rs).
fn main() {
    afl::fuzz!(|data: &[u8]| onehttps::fuzzing::admin_json(data));
}
