// C types and host callbacks of Envoy's golang HTTP filter ABI, in the layout of the Envoy
// 1.40-era Go SDK (contrib/golang/common/go/api/api.h). A plugin library links these
// callbacks unresolved; the process that dlopens it must define all of them.
//
// Declarations only: cgo copies this preamble into the generated export header.

#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
  const char* data;
  uint64_t len;
} Cstring;

struct httpRequest;

// One per direction per request, owned by the host. Go keeps the first pointer it receives
// for each direction and passes it back as `s` to the per-direction callbacks.
typedef struct {
  struct httpRequest* req;
  int is_encoding; // 0 decode, 1 encode
  int state;       // 1 ProcessingHeader, 4 ProcessingData, 6 ProcessingTrailer while in Go
} processState;

// One per request, owned by the host until envoyGoFilterHttpFinalize.
typedef struct httpRequest {
  Cstring plugin_name;
  uint64_t configId;
  uint32_t worker_id; // index into Go's per-worker request maps, below httpConfig.concurrency
  _Atomic(int) is_golang_processing_log;
} httpRequest;

// One per plugin config, owned by the host until envoyGoConfigHttpFinalize (filter-level
// configs only; Go keeps no pointer to per-route configs).
typedef struct {
  uint64_t plugin_name_ptr;
  uint64_t plugin_name_len;
  uint64_t config_ptr; // serialized google.protobuf.Any, read only during the call
  uint64_t config_len;
  int is_route_config;
  uint32_t concurrency;
} httpConfig;

typedef enum {
  Set,
  Append,
  Prepend,
} bufferAction;

typedef enum {
  HeaderSet,
  HeaderAdd,
} headerAction;

typedef enum {
  CAPIOK = 0,
  CAPIFilterIsGone = -1,
  CAPIFilterIsDestroy = -2,
  CAPINotInGo = -3,
  CAPIInvalidPhase = -4,
  CAPIValueNotFound = -5,
  CAPIYield = -6,
  CAPIInternalFailure = -7,
  CAPISerializationFailure = -8,
  CAPIInvalidScene = -9,
  CAPIInvalidIPAddress = -10,
} CAPIStatus;

// Per-direction callbacks: `s` is a processState*.
CAPIStatus envoyGoFilterHttpContinue(void* s, int status);
CAPIStatus envoyGoFilterHttpSendLocalReply(void* s, int response_code, void* body_text_data,
                                           int body_text_len, void* headers, int headers_num,
                                           long long int grpc_status, void* details_data,
                                           int details_len);
CAPIStatus envoyGoFilterHttpSendPanicReply(void* s, void* details_data, int details_len);
CAPIStatus envoyGoFilterHttpAddData(void* s, void* data, int data_len, bool is_streaming);
CAPIStatus envoyGoFilterHttpInjectData(void* s, void* data, int data_len);
CAPIStatus envoyGoFilterHttpSetUpstreamOverrideHost(void* s, void* host_data, int host_len,
                                                    bool strict);

CAPIStatus envoyGoFilterHttpGetHeader(void* s, void* key_data, int key_len, uint64_t* value_data,
                                      int* value_len);
CAPIStatus envoyGoFilterHttpCopyHeaders(void* s, void* strs, void* buf);
CAPIStatus envoyGoFilterHttpSetHeaderHelper(void* s, void* key_data, int key_len, void* value_data,
                                            int value_len, headerAction action);
CAPIStatus envoyGoFilterHttpRemoveHeader(void* s, void* key_data, int key_len);

CAPIStatus envoyGoFilterHttpGetBuffer(void* s, uint64_t buffer, void* value);
CAPIStatus envoyGoFilterHttpDrainBuffer(void* s, uint64_t buffer, uint64_t length);
CAPIStatus envoyGoFilterHttpSetBufferHelper(void* s, uint64_t buffer, void* data, int length,
                                            bufferAction action);

CAPIStatus envoyGoFilterHttpCopyTrailers(void* s, void* strs, void* buf);
CAPIStatus envoyGoFilterHttpSetTrailer(void* s, void* key_data, int key_len, void* value_data,
                                       int value_len, headerAction action);
CAPIStatus envoyGoFilterHttpRemoveTrailer(void* s, void* key_data, int key_len);

// Request-wide callbacks: `r` is an httpRequest*.
CAPIStatus envoyGoFilterHttpClearRouteCache(void* r, bool refresh);
CAPIStatus envoyGoFilterHttpGetStringValue(void* r, int id, uint64_t* value_data, int* value_len);
CAPIStatus envoyGoFilterHttpGetIntegerValue(void* r, int id, uint64_t* value);
CAPIStatus envoyGoFilterHttpGetDynamicMetadata(void* r, void* name_data, int name_len,
                                               uint64_t* value_data, int* value_len);
CAPIStatus envoyGoFilterHttpSetDynamicMetadata(void* r, void* name_data, int name_len,
                                               void* key_data, int key_len, void* buf_data,
                                               int buf_len);
CAPIStatus envoyGoFilterHttpSetStringFilterState(void* r, void* key_data, int key_len,
                                                 void* value_data, int value_len, int state_type,
                                                 int life_span, int stream_sharing);
CAPIStatus envoyGoFilterHttpGetStringFilterState(void* r, void* key_data, int key_len,
                                                 uint64_t* value_data, int* value_len);
CAPIStatus envoyGoFilterHttpGetStringProperty(void* r, void* key_data, int key_len,
                                              uint64_t* value_data, int* value_len, int* rc);
CAPIStatus envoyGoFilterHttpGetStringSecret(void* r, void* key_data, int key_len,
                                            uint64_t* value_data, int* value_len);
CAPIStatus envoyGoFilterHttpSetDrainConnectionUponCompletion(void* r);
void envoyGoFilterHttpFinalize(void* r, int reason);

// Config callbacks: `c` is an httpConfig*.
void envoyGoConfigHttpFinalize(void* c);
CAPIStatus envoyGoFilterHttpDefineMetric(void* c, uint32_t metric_type, void* name_data,
                                         int name_len, uint32_t* metric_id);
CAPIStatus envoyGoFilterHttpIncrementMetric(void* c, uint32_t metric_id, int64_t offset);
CAPIStatus envoyGoFilterHttpGetMetric(void* c, uint32_t metric_id, uint64_t* value);
CAPIStatus envoyGoFilterHttpRecordMetric(void* c, uint32_t metric_id, uint64_t value);

// Process-wide callbacks.
void envoyGoFilterLog(uint32_t level, void* message_data, int message_len);
uint32_t envoyGoFilterLogLevel(void);
