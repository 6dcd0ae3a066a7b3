//! API request bodies: every JSON body the API accepts, decoded from whatever bytes arrive
//! (the same decoding the handlers' extractor runs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = breakglass_server::decode_request_bodies(data);
});
