//! Raw proxy-wasm hostcalls. The SDK's wrappers panic on any status they do not expect (and on
//! non-UTF-8 header values); a panic kills the VM for every later request on that worker, so the
//! filter calls the imports itself and turns every status into a `Result`.
//! Never import `proxy_get_log_level` here: Kong's host declares it with another signature and
//! refuses to load a module that imports it.

use std::ptr::null_mut;

pub const STATUS_OK: u32 = 0;
pub const STATUS_NOT_FOUND: u32 = 1;
pub const STATUS_CAS_MISMATCH: u32 = 8;

pub const BUFFER_HTTP_REQUEST_BODY: u32 = 0;
pub const BUFFER_HTTP_RESPONSE_BODY: u32 = 1;
pub const BUFFER_HTTP_CALL_RESPONSE_BODY: u32 = 4;
pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;

pub const MAP_HTTP_REQUEST_HEADERS: u32 = 0;
pub const MAP_HTTP_RESPONSE_HEADERS: u32 = 2;
pub const MAP_HTTP_RESPONSE_TRAILERS: u32 = 3;
pub const MAP_HTTP_CALL_RESPONSE_HEADERS: u32 = 6;

const STREAM_HTTP_REQUEST: u32 = 0;

pub const METRIC_COUNTER: u32 = 0;
pub const METRIC_GAUGE: u32 = 1;
pub const METRIC_HISTOGRAM: u32 = 2;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_header_map_pairs(map_type: u32, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_set_property(path_data: *const u8, path_size: usize, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(metric_type: u32, name_data: *const u8, name_size: usize, return_id: *mut u32) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

/// Takes ownership of a buffer the host allocated through the SDK's `proxy_on_memory_allocate`.
fn owned_bytes(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: the host filled `size` bytes at `data`, allocated by our allocator for us to own.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

pub fn log(level: u32, message: &str) {
    // SAFETY: pointer and length come from a live &str.
    unsafe {
        proxy_log(level, message.as_ptr(), message.len());
    }
}

pub fn get_buffer(buffer_type: u32, start: usize, max_size: usize) -> Result<Vec<u8>, u32> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: out-pointers are valid locals; the returned buffer is handed to `owned_bytes`.
    let status = unsafe { proxy_get_buffer_bytes(buffer_type, start, max_size, &mut data, &mut size) };
    match status {
        STATUS_OK => Ok(owned_bytes(data, size)),
        STATUS_NOT_FOUND => Ok(Vec::new()),
        other => Err(other),
    }
}

pub fn get_header(map_type: u32, name: &str) -> Result<Option<Vec<u8>>, u32> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: as in `get_buffer`.
    let status = unsafe { proxy_get_header_map_value(map_type, name.as_ptr(), name.len(), &mut data, &mut size) };
    match status {
        STATUS_OK => Ok(Some(owned_bytes(data, size))),
        STATUS_NOT_FOUND => Ok(None),
        other => Err(other),
    }
}

pub fn replace_header(map_type: u32, name: &str, value: &str) -> Result<(), u32> {
    // SAFETY: pointers and lengths come from live &strs.
    let status =
        unsafe { proxy_replace_header_map_value(map_type, name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(status)
    }
}

/// Every header of a map, in the proxy-wasm pairs layout.
pub fn get_header_pairs(map_type: u32) -> Result<Vec<u8>, u32> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: as in `get_buffer`.
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    match status {
        STATUS_OK => Ok(owned_bytes(data, size)),
        other => Err(other),
    }
}

pub fn add_header(map_type: u32, name: &str, value: &str) -> Result<(), u32> {
    // SAFETY: pointers and lengths come from live &strs.
    let status =
        unsafe { proxy_add_header_map_value(map_type, name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(status)
    }
}

pub fn remove_header(map_type: u32, name: &str) -> Result<(), u32> {
    // SAFETY: pointer and length come from a live &str.
    let status = unsafe { proxy_remove_header_map_value(map_type, name.as_ptr(), name.len()) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(status)
    }
}

/// Replaces bytes `start..start+size` of a body buffer with `bytes`.
pub fn set_buffer(buffer_type: u32, start: usize, size: usize, bytes: &[u8]) -> Result<(), u32> {
    // SAFETY: pointer and length come from a live slice.
    let status = unsafe { proxy_set_buffer_bytes(buffer_type, start, size, bytes.as_ptr(), bytes.len()) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(status)
    }
}

/// `path` segments are joined with NUL, as the ABI expects.
pub fn set_property(path: &[&str], value: &[u8]) -> Result<(), u32> {
    let joined = path.join("\0");
    // SAFETY: pointers and lengths come from live values.
    let status = unsafe { proxy_set_property(joined.as_ptr(), joined.len(), value.as_ptr(), value.len()) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(status)
    }
}

pub fn now_nanos() -> u64 {
    let mut nanos = 0;
    // SAFETY: `nanos` is a valid out-pointer.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut nanos) };
    if status == STATUS_OK {
        nanos
    } else {
        0
    }
}

pub fn send_local_response(status_code: u16, details: &str, body: &[u8], headers: &[u8]) -> Result<(), u32> {
    // SAFETY: pointers and lengths come from live slices.
    let status = unsafe {
        proxy_send_local_response(
            u32::from(status_code),
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(status)
    }
}

/// A shared-data value and its compare-and-swap token; `None` when the key does not exist.
pub fn get_shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, u32> {
    let mut data = null_mut();
    let mut size = 0;
    let mut cas = 0;
    // SAFETY: as in `get_buffer`.
    let status = unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        STATUS_OK => Ok(Some((owned_bytes(data, size), cas))),
        STATUS_NOT_FOUND => Ok(None),
        other => Err(other),
    }
}

/// Writes a shared-data value if its token is still `cas` (0: unconditionally).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), u32> {
    // SAFETY: pointers and lengths come from live values.
    let status = unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(status)
    }
}

/// `path` segments are joined with NUL, as the ABI expects.
pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, u32> {
    let joined = path.join("\0");
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: as in `get_buffer`.
    let status = unsafe { proxy_get_property(joined.as_ptr(), joined.len(), &mut data, &mut size) };
    match status {
        STATUS_OK => Ok(Some(owned_bytes(data, size))),
        STATUS_NOT_FOUND => Ok(None),
        other => Err(other),
    }
}

pub fn define_metric(metric_type: u32, name: &str) -> Result<u32, u32> {
    let mut id = 0;
    // SAFETY: pointer and length come from a live &str; `id` is a valid out-pointer.
    let status = unsafe { proxy_define_metric(metric_type, name.as_ptr(), name.len(), &mut id) };
    if status == STATUS_OK {
        Ok(id)
    } else {
        Err(status)
    }
}

pub fn increment_metric(id: u32, offset: i64) {
    // SAFETY: plain values.
    unsafe {
        proxy_increment_metric(id, offset);
    }
}

pub fn record_metric(id: u32, value: u64) {
    // SAFETY: plain values.
    unsafe {
        proxy_record_metric(id, value);
    }
}

/// Lets a request paused in its body step go on (`proxy_continue_stream`, which Kong implements).
pub fn resume_request() -> Result<(), u32> {
    // SAFETY: no pointers.
    let status = unsafe { proxy_continue_stream(STREAM_HTTP_REQUEST) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(status)
    }
}

/// The root context's tick; 0 stops it.
pub fn set_tick_period_ms(period: u32) -> Result<(), u32> {
    // SAFETY: no pointers.
    let status = unsafe { proxy_set_tick_period_milliseconds(period) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(status)
    }
}
