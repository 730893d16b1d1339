// Trampolines for the host callbacks that a Go filter plugin (built with Envoy's Go SDK)
// imports by name. The plugin is linked with these symbols undefined, and Envoy opens
// dynamic modules with RTLD_LOCAL, so edgefn's own definitions would stay invisible to it.
// edgefn loads this small library with RTLD_GLOBAL before it opens any plugin: it exports only
// the envoyGo* names, and each forwards to the function that edgefn registered in the table.
// The signatures follow the golang filter's api.h of Envoy 1.40 (34 callbacks).

#include <stdbool.h>
#include <stdint.h>

typedef struct {
  int (*http_continue)(void* s, int status);
  int (*http_send_local_reply)(void* s, int code, void* body, int body_len, void* headers,
                               int headers_num, long long grpc_status, void* details,
                               int details_len);
  int (*http_send_panic_reply)(void* s, void* details, int details_len);
  int (*http_get_header)(void* s, void* key, int key_len, uint64_t* value, int* value_len);
  int (*http_copy_headers)(void* s, void* strs, void* buf);
  int (*http_set_header_helper)(void* s, void* key, int key_len, void* value, int value_len,
                                int action);
  int (*http_remove_header)(void* s, void* key, int key_len);
  int (*http_get_buffer)(void* s, uint64_t buffer, void* out);
  int (*http_drain_buffer)(void* s, uint64_t buffer, uint64_t length);
  int (*http_set_buffer_helper)(void* s, uint64_t buffer, void* data, int length, int action);
  int (*http_copy_trailers)(void* s, void* strs, void* buf);
  int (*http_set_trailer)(void* s, void* key, int key_len, void* value, int value_len,
                          int action);
  int (*http_remove_trailer)(void* s, void* key, int key_len);
  int (*http_clear_route_cache)(void* r, bool refresh);
  int (*http_get_string_value)(void* r, int id, uint64_t* value, int* value_len);
  int (*http_get_integer_value)(void* r, int id, uint64_t* value);
  int (*http_get_dynamic_metadata)(void* r, void* name, int name_len, uint64_t* value,
                                   int* value_len);
  int (*http_set_dynamic_metadata)(void* r, void* name, int name_len, void* key, int key_len,
                                   void* buf, int buf_len);
  int (*http_set_string_filter_state)(void* r, void* key, int key_len, void* value,
                                      int value_len, int state_type, int life_span,
                                      int stream_sharing);
  int (*http_get_string_filter_state)(void* r, void* key, int key_len, uint64_t* value,
                                      int* value_len);
  int (*http_get_string_property)(void* r, void* key, int key_len, uint64_t* value,
                                  int* value_len, int* rc);
  void (*http_finalize)(void* r, int reason);
  void (*config_http_finalize)(void* c);
  int (*http_define_metric)(void* c, uint32_t metric_type, void* name, int name_len,
                            uint32_t* metric_id);
  int (*http_increment_metric)(void* c, uint32_t metric_id, int64_t offset);
  int (*http_get_metric)(void* c, uint32_t metric_id, uint64_t* value);
  int (*http_record_metric)(void* c, uint32_t metric_id, uint64_t value);
  void (*log)(uint32_t level, void* message, int message_len);
  uint32_t (*log_level)(void);
  int (*http_add_data)(void* s, void* data, int data_len, bool is_streaming);
  int (*http_inject_data)(void* s, void* data, int data_len);
  int (*http_set_upstream_override_host)(void* s, void* host, int host_len, bool strict);
  int (*http_get_string_secret)(void* r, void* key, int key_len, uint64_t* value,
                                int* value_len);
  int (*http_set_drain_connection_upon_completion)(void* r);
} edgefn_gohost_table;

static edgefn_gohost_table table;

// Copies the table. edgefn calls this once, before it opens the first plugin; the table is
// never changed afterwards, so the plain reads below need no synchronisation.
void edgefn_gohost_register(const edgefn_gohost_table* source) { table = *source; }

int envoyGoFilterHttpContinue(void* s, int status) { return table.http_continue(s, status); }

int envoyGoFilterHttpSendLocalReply(void* s, int code, void* body, int body_len, void* headers,
                                    int headers_num, long long grpc_status, void* details,
                                    int details_len) {
  return table.http_send_local_reply(s, code, body, body_len, headers, headers_num,
                                     grpc_status, details, details_len);
}

int envoyGoFilterHttpSendPanicReply(void* s, void* details, int details_len) {
  return table.http_send_panic_reply(s, details, details_len);
}

int envoyGoFilterHttpGetHeader(void* s, void* key, int key_len, uint64_t* value,
                               int* value_len) {
  return table.http_get_header(s, key, key_len, value, value_len);
}

int envoyGoFilterHttpCopyHeaders(void* s, void* strs, void* buf) {
  return table.http_copy_headers(s, strs, buf);
}

int envoyGoFilterHttpSetHeaderHelper(void* s, void* key, int key_len, void* value,
                                     int value_len, int action) {
  return table.http_set_header_helper(s, key, key_len, value, value_len, action);
}

int envoyGoFilterHttpRemoveHeader(void* s, void* key, int key_len) {
  return table.http_remove_header(s, key, key_len);
}

int envoyGoFilterHttpGetBuffer(void* s, uint64_t buffer, void* out) {
  return table.http_get_buffer(s, buffer, out);
}

int envoyGoFilterHttpDrainBuffer(void* s, uint64_t buffer, uint64_t length) {
  return table.http_drain_buffer(s, buffer, length);
}

int envoyGoFilterHttpSetBufferHelper(void* s, uint64_t buffer, void* data, int length,
                                     int action) {
  return table.http_set_buffer_helper(s, buffer, data, length, action);
}

int envoyGoFilterHttpCopyTrailers(void* s, void* strs, void* buf) {
  return table.http_copy_trailers(s, strs, buf);
}

int envoyGoFilterHttpSetTrailer(void* s, void* key, int key_len, void* value, int value_len,
                                int action) {
  return table.http_set_trailer(s, key, key_len, value, value_len, action);
}

int envoyGoFilterHttpRemoveTrailer(void* s, void* key, int key_len) {
  return table.http_remove_trailer(s, key, key_len);
}

int envoyGoFilterHttpClearRouteCache(void* r, bool refresh) {
  return table.http_clear_route_cache(r, refresh);
}

int envoyGoFilterHttpGetStringValue(void* r, int id, uint64_t* value, int* value_len) {
  return table.http_get_string_value(r, id, value, value_len);
}

int envoyGoFilterHttpGetIntegerValue(void* r, int id, uint64_t* value) {
  return table.http_get_integer_value(r, id, value);
}

int envoyGoFilterHttpGetDynamicMetadata(void* r, void* name, int name_len, uint64_t* value,
                                        int* value_len) {
  return table.http_get_dynamic_metadata(r, name, name_len, value, value_len);
}

int envoyGoFilterHttpSetDynamicMetadata(void* r, void* name, int name_len, void* key,
                                        int key_len, void* buf, int buf_len) {
  return table.http_set_dynamic_metadata(r, name, name_len, key, key_len, buf, buf_len);
}

int envoyGoFilterHttpSetStringFilterState(void* r, void* key, int key_len, void* value,
                                          int value_len, int state_type, int life_span,
                                          int stream_sharing) {
  return table.http_set_string_filter_state(r, key, key_len, value, value_len, state_type,
                                            life_span, stream_sharing);
}

int envoyGoFilterHttpGetStringFilterState(void* r, void* key, int key_len, uint64_t* value,
                                          int* value_len) {
  return table.http_get_string_filter_state(r, key, key_len, value, value_len);
}

int envoyGoFilterHttpGetStringProperty(void* r, void* key, int key_len, uint64_t* value,
                                       int* value_len, int* rc) {
  return table.http_get_string_property(r, key, key_len, value, value_len, rc);
}

void envoyGoFilterHttpFinalize(void* r, int reason) { table.http_finalize(r, reason); }

void envoyGoConfigHttpFinalize(void* c) { table.config_http_finalize(c); }

int envoyGoFilterHttpDefineMetric(void* c, uint32_t metric_type, void* name, int name_len,
                                  uint32_t* metric_id) {
  return table.http_define_metric(c, metric_type, name, name_len, metric_id);
}

int envoyGoFilterHttpIncrementMetric(void* c, uint32_t metric_id, int64_t offset) {
  return table.http_increment_metric(c, metric_id, offset);
}

int envoyGoFilterHttpGetMetric(void* c, uint32_t metric_id, uint64_t* value) {
  return table.http_get_metric(c, metric_id, value);
}

int envoyGoFilterHttpRecordMetric(void* c, uint32_t metric_id, uint64_t value) {
  return table.http_record_metric(c, metric_id, value);
}

void envoyGoFilterLog(uint32_t level, void* message, int message_len) {
  table.log(level, message, message_len);
}

uint32_t envoyGoFilterLogLevel(void) { return table.log_level(); }

int envoyGoFilterHttpAddData(void* s, void* data, int data_len, bool is_streaming) {
  return table.http_add_data(s, data, data_len, is_streaming);
}

int envoyGoFilterHttpInjectData(void* s, void* data, int data_len) {
  return table.http_inject_data(s, data, data_len);
}

int envoyGoFilterHttpSetUpstreamOverrideHost(void* s, void* host, int host_len, bool strict) {
  return table.http_set_upstream_override_host(s, host, host_len, strict);
}

int envoyGoFilterHttpGetStringSecret(void* r, void* key, int key_len, uint64_t* value,
                                     int* value_len) {
  return table.http_get_string_secret(r, key, key_len, value, value_len);
}

int envoyGoFilterHttpSetDrainConnectionUponCompletion(void* r) {
  return table.http_set_drain_connection_upon_completion(r);
}
