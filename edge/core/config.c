/* config.c: the configuration tables and the YAML loader.
 *
 * Every key is declared once in config_keys[] below with its type, default,
 * limits and description. The same table validates YAML files, writes the
 * default configuration back out as YAML and generates the Markdown reference
 * in README.md, so the three cannot drift apart.
 *
 * A file is a tree of YAML mappings whose leaves are the dotted keys of the
 * table: "gateway.tls.cert" is written
 *
 *     gateway:
 *       tls:
 *         cert: /etc/edged/cert.pem
 *
 * Unknown keys, duplicate keys and bad values are errors naming the file, the
 * line and the key. The walk only descends into mappings that the table
 * declares as sections, so its depth is bounded by the table, whatever the
 * file contains; libyaml's own loader is not recursive (0.2.5).
 */
#define G_LOG_DOMAIN "core"

#include "edge-core.h"

#include <errno.h>
#include <yaml.h>

G_DEFINE_QUARK (edge-config-error-quark, edge_config_error)

typedef enum {
  KEY_STRING,
  KEY_PATH,   /* string; relative values resolved against the file's directory */
  KEY_LISTEN, /* HOST:PORT */
  KEY_ENUM,
  KEY_BOOL,
  KEY_INT,
  KEY_SIZE,     /* bytes, with optional KiB/MiB/GiB suffix */
  KEY_DURATION, /* milliseconds, with ms/s/m/h suffix */
  KEY_LIST,     /* a YAML list of mappings, each validated by an item table */
  KEY_ENV,      /* item tables: a mapping NAME: value, kept as a GStrv of NAME=value */
} KeyType;

typedef struct _ListSpec ListSpec;

typedef struct {
  const char *key;
  KeyType type;
  gsize offset;
  const char *default_value; /* as written in YAML; NULL in an item table: required */
  gint64 min, max;           /* KEY_INT, KEY_SIZE, KEY_DURATION */
  const char *const *choices; /* KEY_ENUM, NULL-terminated */
  const char *description;
  const ListSpec *list;       /* KEY_LIST */
} ConfigKey;

/* The item table of a list key: each item is a struct of @item_size bytes
 * whose fields the keys address; @unique names the key no two items share. */
struct _ListSpec {
  const ConfigKey *keys;
  gsize n_keys;
  gsize item_size;
  const char *unique;
  gsize max_items;
};

static gboolean
is_string_type (KeyType t)
{
  return t == KEY_STRING || t == KEY_PATH || t == KEY_LISTEN || t == KEY_ENUM;
}

static const char *const log_levels[] = { "error", "warning", "info", "debug", NULL };

#define MiB (1024 * 1024)
#define OFF(field) G_STRUCT_OFFSET (EdgeConfig, field)

static const char *const durabilities[] = { "sync", "batch", "none", NULL };

#define SOFF(field) G_STRUCT_OFFSET (EdgeConfigStream, field)

static const ConfigKey stream_keys[] = {
  { "name", KEY_STRING, SOFF (name), NULL, 0, 0, NULL,
    "Stream name: 1 to 128 of a-z, A-Z, 0-9, _ - and .", NULL },
  { "shards", KEY_INT, SOFF (shards), "1", 1, 256, NULL,
    "Shards at creation (an existing stream keeps its shards).", NULL },
  { "durability", KEY_ENUM, SOFF (durability), "sync", 0, 0, durabilities,
    "When a put is acknowledged: sync (after fsync), batch (fsync at least every batch_ms), "
    "none (after write).", NULL },
  { "batch_ms", KEY_DURATION, SOFF (batch_ms), "50ms", 1, 10000, NULL,
    "Longest wait for an fsync with durability batch.", NULL },
  { "retention_hours", KEY_INT, SOFF (retention_hours), "24", 24, 8760, NULL,
    "Hours records are kept.", NULL },
  { "max_record_bytes", KEY_SIZE, SOFF (max_record_bytes), "1MiB", 1024, 10 * MiB, NULL,
    "Largest record (data and partition key).", NULL },
  { "retention_bytes", KEY_SIZE, SOFF (retention_bytes), "0", 0, G_MAXINT64, NULL,
    "Most bytes kept per shard, oldest segments removed first; 0: no size limit.", NULL },
  { "write_records_per_second", KEY_INT, SOFF (write_records_per_second), "0", 0, 1000000000,
    NULL,
    "Records per second each shard takes; more are refused with "
    "ProvisionedThroughputExceededException. 0: no limit.",
    NULL },
  { "write_bytes_per_second", KEY_SIZE, SOFF (write_bytes_per_second), "0", 0, G_MAXINT64, NULL,
    "Bytes per second each shard takes (data and partition keys); 0: no limit.", NULL },
};

static const ListSpec stream_list = { stream_keys, G_N_ELEMENTS (stream_keys),
                                      sizeof (EdgeConfigStream), "name", 1000 };

static const char *const rtsp_transports[] = { "tcp", "udp", NULL };

#define COFF(field) G_STRUCT_OFFSET (EdgeConfigCamera, field)

static const ConfigKey camera_keys[] = {
  { "name", KEY_STRING, COFF (name), NULL, 0, 0, NULL,
    "Camera name (also its Kinesis Video stream name): 1 to 128 of a-z, A-Z, 0-9, _ - and .",
    NULL },
  { "source", KEY_STRING, COFF (source), NULL, 0, 0, NULL,
    "test:// (a moving ball and a clock; test://?pattern=snow and other videotestsrc patterns), "
    "file:///PATH (played in real time, looped), "
    "rtsp://[USER:PASS@]HOST/PATH, v4l2:///dev/videoN or libcamera://[NAME].", NULL },
  { "rtsp_transport", KEY_ENUM, COFF (rtsp_transport), "tcp", 0, 0, rtsp_transports,
    "RTP over the RTSP connection (tcp) or over UDP (udp).", NULL },
  { "fragment_duration", KEY_DURATION, COFF (fragment_ms), "2s", 500, 10000, NULL,
    "Target fragment length; fragments are cut at the first keyframe past it.", NULL },
  { "retention_hours", KEY_INT, COFF (retention_hours), "24", 1, 8760, NULL,
    "Hours recordings are kept.", NULL },
  { "retention_bytes", KEY_SIZE, COFF (retention_bytes), "0", 0, G_MAXINT64, NULL,
    "Most bytes of recordings kept, oldest removed first; 0: no size limit.", NULL },
  { "bitrate_kbps", KEY_INT, COFF (bitrate_kbps), "1500", 50, 100000, NULL,
    "Encoder bitrate for raw sources (test, V4L2, libcamera); compressed sources are kept as "
    "they come.", NULL },
  { "keyframe_interval", KEY_DURATION, COFF (keyframe_ms), "2s", 200, 10000, NULL,
    "Keyframe interval the encoder of a raw source is set to.", NULL },
  { "width", KEY_INT, COFF (width), "0", 0, 7680, NULL,
    "Raw sources: frame width; 0: the source's own (test: 640).", NULL },
  { "height", KEY_INT, COFF (height), "0", 0, 4320, NULL,
    "Raw sources: frame height; 0: the source's own (test: 360).", NULL },
  { "fps", KEY_INT, COFF (fps), "0", 0, 240, NULL,
    "Raw sources: frames per second; 0: the source's own (test: 15).", NULL },
  { "detect", KEY_STRING, COFF (detect), "", 0, 0, NULL,
    "Detectors run on the camera, comma-separated: motion, face (where GStreamer's OpenCV "
    "plugin is installed). Empty: none.", NULL },
  { "detect_fps", KEY_INT, COFF (detect_fps), "5", 1, 30, NULL,
    "Frames a second the detectors look at.", NULL },
  { "detect_width", KEY_INT, COFF (detect_width), "320", 64, 1920, NULL,
    "Width the detectors see frames at (the height keeps the aspect ratio).", NULL },
  { "motion_sensitivity", KEY_INT, COFF (motion_sensitivity), "50", 1, 100, NULL,
    "1: only strong changes are motion; 100: the faintest are.", NULL },
  { "motion_min_area", KEY_STRING, COFF (motion_min_area), "0.5%", 0, 0, NULL,
    "Smallest moving object that counts, as a share of the frame (0.5% or 0.005).", NULL },
  { "zones", KEY_STRING, COFF (zones), "", 0, 0, NULL,
    "Where motion counts: polygons \"include|exclude X,Y X,Y X,Y ...\" separated by \";\", "
    "X and Y fractions of the frame from its top left. With include zones only they count; "
    "exclude zones never do. Empty: the whole frame.", NULL },
  { "event_cooldown", KEY_DURATION, COFF (event_cooldown_ms), "5s", 200, 600000, NULL,
    "An event ends after this long with nothing detected.", NULL },
  { "event_pre_roll", KEY_DURATION, COFF (event_pre_roll_ms), "5s", 0, 60000, NULL,
    "Footage before an event that its clip starts with (and that is kept with it).", NULL },
  { "event_post_roll", KEY_DURATION, COFF (event_post_roll_ms), "5s", 0, 60000, NULL,
    "Footage after an event that its clip ends with (and that is kept with it).", NULL },
  { "event_retention_hours", KEY_INT, COFF (event_retention_hours), "168", 1, 8760, NULL,
    "Hours footage around events is kept (ordinary footage: retention_hours); a full disk "
    "removes ordinary footage first.", NULL },
  { "events_stream", KEY_STRING, COFF (events_stream), "events", 0, 0, NULL,
    "Data stream each event is appended to (made when missing; partition key: the camera).",
    NULL },
};

static const ListSpec camera_list = { camera_keys, G_N_ELEMENTS (camera_keys),
                                      sizeof (EdgeConfigCamera), "name", 64 };

#define FOFF(field) G_STRUCT_OFFSET (EdgeConfigFunction, field)

static const ConfigKey function_keys[] = {
  { "name", KEY_STRING, FOFF (name), NULL, 0, 0, NULL,
    "Function name: 1 to 64 of a-z, A-Z, 0-9, _ and -.", NULL },
  { "bootstrap", KEY_PATH, FOFF (bootstrap), NULL, 0, 0, NULL,
    "The executable that runs the handler, speaking the Lambda Runtime API (a custom "
    "runtime's bootstrap, or a script that starts a runtime interface client); its directory "
    "is LAMBDA_TASK_ROOT.", NULL },
  { "handler", KEY_STRING, FOFF (handler), "", 0, 0, NULL,
    "Passed as _HANDLER (index.handler, for a runtime interface client).", NULL },
  { "environment", KEY_ENV, FOFF (environment), "", 0, 0, NULL,
    "Environment variables for the handler, NAME: value (4 KiB in all, as in Lambda; the "
    "names Lambda reserves, such as AWS_REGION or _HANDLER, are refused).", NULL },
  { "timeout", KEY_DURATION, FOFF (timeout_ms), "3s", 1000, 900 * 1000, NULL,
    "Longest an invocation may run; past it the environment is killed and the invocation "
    "fails with \"Task timed out\".", NULL },
  { "memory_mb", KEY_INT, FOFF (memory_mb), "128", 128, 10240, NULL,
    "Memory size: the environment's limit (RLIMIT_DATA, inherited by what the bootstrap "
    "starts, so an allocation past it fails in the handler; and the environment's cgroup "
    "memory limit where edged can make one, past which the kernel kills and the invocation "
    "fails with Runtime.OutOfMemory), told to the handler as AWS_LAMBDA_FUNCTION_MEMORY_SIZE.",
    NULL },
  { "concurrency", KEY_INT, FOFF (concurrency), "10", 1, 1000, NULL,
    "Execution environments (so invocations running at once) at most; more invocations wait "
    "for one to be free.", NULL },
  { "idle_timeout", KEY_DURATION, FOFF (idle_ms), "5m", 1000, 24 * 3600 * 1000, NULL,
    "An environment with no invocation for this long stops (no process is left when a "
    "function is idle).", NULL },
  { "max_processes", KEY_INT, FOFF (max_processes), "1024", 8, 32768, NULL,
    "Processes and threads an environment may have at once (a cgroup pids.max), where edged "
    "can make control groups (cgroup v2 delegated to it, or v1 as root); a fork past it fails "
    "in the handler.", NULL },
  { "max_retry_attempts", KEY_INT, FOFF (max_retry_attempts), "2", 0, 2, NULL,
    "Asynchronous invocations (Event): times a failed one is retried before it goes to "
    "on_failure.", NULL },
  { "max_event_age", KEY_DURATION, FOFF (max_event_age_ms), "6h", 60 * 1000, 6 * 3600 * 1000,
    NULL,
    "Asynchronous invocations: one still not done this long after it was accepted (the "
    "function failing or busy) goes to on_failure.", NULL },
  { "retry_delay", KEY_DURATION, FOFF (retry_delay_ms), "1m", 100, 3600 * 1000, NULL,
    "Asynchronous invocations: wait before the first retry, doubled for each next one "
    "(Lambda's: 1 minute, then 2).", NULL },
  { "on_success", KEY_STRING, FOFF (on_success), "", 0, 0, NULL,
    "Asynchronous invocations: data stream (a name or a Kinesis stream ARN) that receives an "
    "invocation record, with the request and the response, for each one that succeeded.",
    NULL },
  { "on_failure", KEY_STRING, FOFF (on_failure), "", 0, 0, NULL,
    "Asynchronous invocations: data stream that receives the invocation record of each one "
    "that failed every attempt or grew too old; without it such an invocation is logged and "
    "dropped.", NULL },
};

static const ListSpec function_list = { function_keys, G_N_ELEMENTS (function_keys),
                                        sizeof (EdgeConfigFunction), "name", 256 };

#define SCOFF(field) G_STRUCT_OFFSET (EdgeConfigSchedule, field)

static const ConfigKey schedule_keys[] = {
  { "name", KEY_STRING, SCOFF (name), NULL, 0, 0, NULL,
    "Schedule name: 1 to 64 of a-z, A-Z, 0-9, _ . and -.", NULL },
  { "function", KEY_STRING, SCOFF (function), NULL, 0, 0, NULL,
    "The function invoked (asynchronously, with retries and destinations).", NULL },
  { "expression", KEY_STRING, SCOFF (expression), NULL, 0, 0, NULL,
    "rate(5 minutes), or cron(0/15 8-17 ? * MON-FRI *) with EventBridge's six fields "
    "(minutes hours day-of-month month day-of-week year, in UTC).", NULL },
  { "input", KEY_STRING, SCOFF (input), "", 0, 0, NULL,
    "JSON the function receives instead of the Scheduled Event.", NULL },
};

static const ListSpec schedule_list = { schedule_keys, G_N_ELEMENTS (schedule_keys),
                                        sizeof (EdgeConfigSchedule), "name", 1000 };

#define ROFF(field) G_STRUCT_OFFSET (EdgeConfigRoute, field)

static const ConfigKey route_keys[] = {
  { "route", KEY_STRING, ROFF (route), NULL, 0, 0, NULL,
    "METHOD /path: GET /items/{id}, ANY /hooks/{proxy+}; {name} takes one segment, a last "
    "{name+} the rest of the path.", NULL },
  { "function", KEY_STRING, ROFF (function), NULL, 0, 0, NULL,
    "The function invoked with the request (API Gateway's payload format 2.0); its answer is "
    "the response.", NULL },
  { "timeout", KEY_DURATION, ROFF (timeout_ms), "30s", 50, 900 * 1000, NULL,
    "Longest the gateway waits for the function; past it the client gets 503.", NULL },
};

static const ListSpec route_list = { route_keys, G_N_ELEMENTS (route_keys),
                                     sizeof (EdgeConfigRoute), "route", 1000 };

static const char *const starting_positions[] = { "TRIM_HORIZON", "LATEST", NULL };

#define MOFF(field) G_STRUCT_OFFSET (EdgeConfigMapping, field)

static const ConfigKey mapping_keys[] = {
  { "stream", KEY_STRING, MOFF (stream), NULL, 0, 0, NULL,
    "The data stream read (its name).", NULL },
  { "function", KEY_STRING, MOFF (function), NULL, 0, 0, NULL,
    "The function invoked with batches of its records (Lambda's Kinesis event).", NULL },
  { "batch_size", KEY_INT, MOFF (batch_size), "100", 1, 10000, NULL,
    "Records per invocation at most.", NULL },
  { "batching_window", KEY_DURATION, MOFF (batching_window_ms), "0ms", 0, 300 * 1000, NULL,
    "Longest wait to gather a full batch before invoking with fewer records.", NULL },
  { "starting_position", KEY_ENUM, MOFF (starting_position), "LATEST", 0, 0,
    starting_positions,
    "Where a new mapping starts in each shard: TRIM_HORIZON (the oldest record kept) or LATEST "
    "(records that arrive from then on). Afterwards it resumes from its checkpoints.", NULL },
  { "max_retry_attempts", KEY_INT, MOFF (max_retry_attempts), "-1", -1, 10000, NULL,
    "Retries of a failed batch before it goes to on_failure and the shard moves on; -1 retries "
    "until the records expire (the shard waits).", NULL },
  { "max_record_age", KEY_DURATION, MOFF (max_record_age_ms), "0ms", 0, 7 * 24 * 3600 * 1000LL,
    NULL,
    "Records older than this are not sent but go to on_failure; 0: no limit.", NULL },
  { "bisect_on_error", KEY_BOOL, MOFF (bisect_on_error), "false", 0, 0, NULL,
    "Split a failed batch in two and retry each half, down to single records, so that one bad "
    "record does not hold back the others.", NULL },
  { "report_batch_item_failures", KEY_BOOL, MOFF (report_batch_item_failures), "false", 0, 0,
    NULL,
    "The function may answer {\"batchItemFailures\": [{\"itemIdentifier\": SEQUENCE}]}: the "
    "records from the first one listed are retried, those before it are done.", NULL },
  { "on_failure", KEY_STRING, MOFF (on_failure), "", 0, 0, NULL,
    "Data stream that receives a record describing each batch given up on (Lambda's "
    "KinesisBatchInfo: shard, first and last sequence numbers).", NULL },
};

static const ListSpec mapping_list = { mapping_keys, G_N_ELEMENTS (mapping_keys),
                                       sizeof (EdgeConfigMapping), NULL, 1000 };

#define WOFF(field) G_STRUCT_OFFSET (EdgeConfigWebSocket, field)

static const ConfigKey websocket_keys[] = {
  { "path", KEY_STRING, WOFF (path), NULL, 0, 0, NULL,
    "Gateway path clients connect to (ws://HOST:PORT/PATH), e.g. /chat.", NULL },
  { "connect", KEY_STRING, WOFF (connect), "", 0, 0, NULL,
    "Function for $connect: it sees the handshake (headers, query) and lets the client in by "
    "succeeding (a statusCode, if it answers one, of 2xx); otherwise the handshake is refused "
    "with its status. Without it, every client is let in.", NULL },
  { "disconnect", KEY_STRING, WOFF (disconnect), "", 0, 0, NULL,
    "Function for $disconnect, told when a connection has closed.", NULL },
  { "message", KEY_STRING, WOFF (message), NULL, 0, 0, NULL,
    "Function for $default: each message a client sends. A \"body\" in its answer is sent "
    "back to that client; POST /@connections/ID sends to any client.", NULL },
};

static const ListSpec websocket_list = { websocket_keys, G_N_ELEMENTS (websocket_keys),
                                         sizeof (EdgeConfigWebSocket), "path", 100 };

#define WROFF(field) G_STRUCT_OFFSET (EdgeConfigWebSocketRoute, field)

static const ConfigKey websocket_route_keys[] = {
  { "path", KEY_STRING, WROFF (path), NULL, 0, 0, NULL,
    "The path of a WebSocket API in websockets.", NULL },
  { "action", KEY_STRING, WROFF (action), NULL, 0, 0, NULL,
    "Route key: messages that are JSON objects with this \"action\" (API Gateway's "
    "$request.body.action) go to the function; the rest go to $default.", NULL },
  { "function", KEY_STRING, WROFF (function), NULL, 0, 0, NULL,
    "The function for those messages.", NULL },
};

static const ListSpec websocket_route_list = { websocket_route_keys,
                                               G_N_ELEMENTS (websocket_route_keys),
                                               sizeof (EdgeConfigWebSocketRoute), NULL, 1000 };

static const char *const delivery_destinations[] = { "directory", "s3", "http", "nats", NULL };
static const char *const delivery_compressions[] = { "none", "gzip", "zstd", NULL };

/* The NATS connection's TLS and credentials keys, the same for delivery
 * streams and forwarders; @OFFSET is the table's offset macro. */
#define NATS_SECURITY_KEYS(OFFSET)                                                                \
  { "tls_ca_file", KEY_PATH, OFFSET (tls_ca_file), "", 0, 0, NULL,                               \
    "nats: the CA certificates (PEM) the servers' certificates are checked against, for "        \
    "tls:// servers; \"\": the system's.", NULL },                                                \
  { "tls_cert_file", KEY_PATH, OFFSET (tls_cert_file), "", 0, 0, NULL,                           \
    "nats: a client certificate (PEM), for servers that verify clients; with tls_key_file.",     \
    NULL },                                                                                       \
  { "tls_key_file", KEY_PATH, OFFSET (tls_key_file), "", 0, 0, NULL, "nats: its private key.",   \
    NULL },                                                                                       \
  { "credentials_file", KEY_PATH, OFFSET (credentials_file), "", 0, 0, NULL,                     \
    "nats: a .creds file (user JWT and NKey seed), for servers with decentralised auth.",        \
    NULL },

#define DOFF(field) G_STRUCT_OFFSET (EdgeConfigDelivery, field)

static const ConfigKey delivery_keys[] = {
  { "name", KEY_STRING, DOFF (name), NULL, 0, 0, NULL,
    "Delivery stream name: 1 to 64 of a-z, A-Z, 0-9, _ . and -.", NULL },
  { "stream", KEY_STRING, DOFF (stream), NULL, 0, 0, NULL, "The data stream delivered.", NULL },
  { "destination", KEY_ENUM, DOFF (destination), NULL, 0, 0, delivery_destinations,
    "directory (files on this machine), s3 (S3-compatible object storage), http (Firehose's "
    "HTTP endpoint delivery) or nats (NATS JetStream, a message per record, each "
    "acknowledged).", NULL },
  { "directory", KEY_PATH, DOFF (directory), "", 0, 0, NULL,
    "directory: where objects are written (each file written whole, then renamed into place).",
    NULL },
  { "endpoint", KEY_STRING, DOFF (endpoint), "", 0, 0, NULL,
    "s3: the server, http(s)://HOST[:PORT] (path-style requests).", NULL },
  { "bucket", KEY_STRING, DOFF (bucket), "", 0, 0, NULL, "s3: the bucket.", NULL },
  { "region", KEY_STRING, DOFF (region), "us-east-1", 0, 0, NULL, "s3: the region signed for.",
    NULL },
  { "access_key_id", KEY_STRING, DOFF (access_key_id), "", 0, 0, NULL,
    "s3: the access key requests are signed with (SigV4).", NULL },
  { "secret_access_key", KEY_STRING, DOFF (secret_access_key), "", 0, 0, NULL,
    "s3: its secret.", NULL },
  { "url", KEY_STRING, DOFF (url), "", 0, 0, NULL,
    "http: the endpoint each batch is POSTed to, in Firehose's request shape.", NULL },
  { "access_key", KEY_STRING, DOFF (access_key), "", 0, 0, NULL,
    "http: sent as X-Amz-Firehose-Access-Key.", NULL },
  { "servers", KEY_STRING, DOFF (servers), "", 0, 0, NULL,
    "nats: the servers, nats://[USER:PASSWORD@]HOST:PORT, comma-separated.", NULL },
  { "subject", KEY_STRING, DOFF (subject), "edged.delivery.{name}", 0, 0, NULL,
    "nats: the subject each record is published on, one message each; {name} and {stream} "
    "are replaced.", NULL },
  { "jetstream_stream", KEY_STRING, DOFF (jetstream_stream), "", 0, 0, NULL,
    "nats: the JetStream stream, made (taking the subject) if missing; \"\": publish only.",
    NULL },
  { "replicas", KEY_INT, DOFF (replicas), "1", 1, 5, NULL,
    "nats: copies of the JetStream stream when edged makes it.", NULL },
  NATS_SECURITY_KEYS (DOFF)
  { "prefix", KEY_STRING, DOFF (prefix), "", 0, 0, NULL,
    "Key prefix; objects are named PREFIX YYYY/MM/DD/HH/NAME-1-YYYY-MM-DD-HH-MM-SS-UUID (UTC, "
    "from the first record's arrival), as Firehose names them.", NULL },
  { "error_prefix", KEY_STRING, DOFF (error_prefix), "errors/", 0, 0, NULL,
    "Prefix of the batches that failed past retry_duration, under error_directory.", NULL },
  { "error_directory", KEY_PATH, DOFF (error_directory), "", 0, 0, NULL,
    "Where failed batches are written, on this machine; \"\": DATA_DIR/delivery-errors/NAME.",
    NULL },
  { "buffer_size", KEY_SIZE, DOFF (buffer_bytes), "5MiB", 1024 * 1024, 128LL * 1024 * 1024, NULL,
    "A batch is delivered once it holds this much (1 to 128 MiB) ...", NULL },
  { "buffer_interval", KEY_DURATION, DOFF (buffer_interval_ms), "300s", 0, 900 * 1000, NULL,
    "... or once its first record is this old (0 to 900 s), whichever comes first.", NULL },
  { "compression", KEY_ENUM, DOFF (compression), "none", 0, 0, delivery_compressions,
    "none, gzip (objects then end in .gz; http: Content-Encoding gzip) or zstd (objects end in "
    ".zst; not for http).", NULL },
  { "retry_duration", KEY_DURATION, DOFF (retry_duration_ms), "300s", 0, 7200 * 1000, NULL,
    "How long a batch is retried (with back-off) before it goes to the error location.", NULL },
  { "starting_position", KEY_ENUM, DOFF (starting_position), "TRIM_HORIZON", 0, 0,
    starting_positions,
    "Where delivery starts on its first start; later it resumes from its checkpoint.", NULL },
  { "transform", KEY_STRING, DOFF (transform), "", 0, 0, NULL,
    "A function each record goes through first, with Firehose's data transformation event; it "
    "answers Ok (with new data), Dropped or ProcessingFailed (to the error directory) per record.",
    NULL },
};

static const ListSpec delivery_list = { delivery_keys, G_N_ELEMENTS (delivery_keys),
                                        sizeof (EdgeConfigDelivery), "name", 64 };

static const char *const forward_destinations[] = { "kinesis", "nats", NULL };

#define FWOFF(field) G_STRUCT_OFFSET (EdgeConfigForwarder, field)

static const ConfigKey forwarder_keys[] = {
  { "name", KEY_STRING, FWOFF (name), NULL, 0, 0, NULL,
    "Forwarder name: 1 to 64 of a-z, A-Z, 0-9, _ . and -.", NULL },
  { "stream", KEY_STRING, FWOFF (stream), NULL, 0, 0, NULL, "The data stream forwarded.", NULL },
  { "destination", KEY_ENUM, FWOFF (destination), NULL, 0, 0, forward_destinations,
    "kinesis (a Kinesis-compatible endpoint, PutRecords signed with SigV4) or nats (NATS "
    "JetStream, each record one message, acknowledged by the stream).", NULL },
  { "endpoint", KEY_STRING, FWOFF (endpoint), "", 0, 0, NULL,
    "kinesis: the server, http(s)://HOST[:PORT].", NULL },
  { "target_stream", KEY_STRING, FWOFF (target_stream), "", 0, 0, NULL,
    "kinesis: the stream written there; \"\": the same name as here.", NULL },
  { "region", KEY_STRING, FWOFF (region), "us-east-1", 0, 0, NULL,
    "kinesis: the region signed for.", NULL },
  { "access_key_id", KEY_STRING, FWOFF (access_key_id), "", 0, 0, NULL,
    "kinesis: the access key requests are signed with.", NULL },
  { "secret_access_key", KEY_STRING, FWOFF (secret_access_key), "", 0, 0, NULL,
    "kinesis: its secret.", NULL },
  { "servers", KEY_STRING, FWOFF (servers), "", 0, 0, NULL,
    "nats: the servers, nats://[USER:PASSWORD@]HOST:PORT, comma-separated; the client fails "
    "over between them and the ones the cluster announces.", NULL },
  { "subject", KEY_STRING, FWOFF (subject), "edged.{source}.{stream}", 0, 0, NULL,
    "nats: the subject records are published on; {source} and {stream} are replaced.", NULL },
  { "jetstream_stream", KEY_STRING, FWOFF (jetstream_stream), "", 0, 0, NULL,
    "nats: the JetStream stream, made (taking the subject) if missing; \"\": publish only, "
    "to a stream made upstream.", NULL },
  { "replicas", KEY_INT, FWOFF (replicas), "1", 1, 5, NULL,
    "nats: copies of the JetStream stream when edged makes it.", NULL },
  NATS_SECURITY_KEYS (FWOFF)
  { "source", KEY_STRING, FWOFF (source), "", 0, 0, NULL,
    "This box's name upstream, in subjects and message ids; \"\": the host name.", NULL },
  { "batch_records", KEY_INT, FWOFF (batch_records), "500", 1, 10000, NULL,
    "Records read from the stream at a time (a Kinesis request carries at most 500).", NULL },
  { "ordered", KEY_BOOL, FWOFF (ordered), "true", 0, 0, NULL,
    "Keep each partition key's order upstream even when a request partly fails: one request "
    "carries at most one record of each key. false: fuller requests, and a retried record may "
    "land after a later one of its key.", NULL },
  { "starting_position", KEY_ENUM, FWOFF (starting_position), "TRIM_HORIZON", 0, 0,
    starting_positions,
    "Where forwarding starts on its first start; later it resumes from its checkpoint.", NULL },
};

static const ListSpec forwarder_list = { forwarder_keys, G_N_ELEMENTS (forwarder_keys),
                                         sizeof (EdgeConfigForwarder), "name", 64 };

static const char *const analytics_windows[] = { "tumbling", "sliding", "session", NULL };

#define AOFF(field) G_STRUCT_OFFSET (EdgeConfigAnalytics, field)

static const ConfigKey analytics_keys[] = {
  { "name", KEY_STRING, AOFF (name), NULL, 0, 0, NULL,
    "Application name: 1 to 64 of a-z, A-Z, 0-9, _ . and -.", NULL },
  { "stream", KEY_STRING, AOFF (stream), NULL, 0, 0, NULL,
    "The data stream read; its records' data are JSON objects.", NULL },
  { "output", KEY_STRING, AOFF (output), NULL, 0, 0, NULL,
    "The data stream each result row (and anomaly) is written to, as a JSON object.", NULL },
  { "window", KEY_ENUM, AOFF (window), "tumbling", 0, 0, analytics_windows,
    "tumbling (back to back, size long), sliding (size long, one starting every slide) or "
    "session (per key, closed after gap without a record).", NULL },
  { "size", KEY_DURATION, AOFF (size_ms), "60s", 1, 7 * 24 * 3600 * 1000LL, NULL,
    "tumbling, sliding: the window's length.", NULL },
  { "slide", KEY_DURATION, AOFF (slide_ms), "0s", 0, 7 * 24 * 3600 * 1000LL, NULL,
    "sliding: how far apart windows start (a divisor of size); 0: size (tumbling).", NULL },
  { "gap", KEY_DURATION, AOFF (gap_ms), "30s", 1, 7 * 24 * 3600 * 1000LL, NULL,
    "session: the silence that ends a key's session.", NULL },
  { "time", KEY_STRING, AOFF (time), "arrival", 0, 0, NULL,
    "SQL giving a record's time in Unix ms, over partition_key, arrival and data, e.g. "
    "\"data->>'ts'\"; arrival (the default) is when the record reached the box.", NULL },
  { "key", KEY_STRING, AOFF (key), "partition_key", 0, 0, NULL,
    "SQL giving the key sessions and anomaly scores are kept per, e.g. \"data->>'sensor'\".",
    NULL },
  { "lateness", KEY_DURATION, AOFF (lateness_ms), "0s", 0, 3600 * 1000, NULL,
    "How long a window waits for late records after its end (time passes with the records' "
    "own times, or the clock for arrival); records later than that are counted and dropped.",
    NULL },
  { "sql", KEY_STRING, AOFF (sql), "", 0, 0, NULL,
    "A SELECT over the view records (partition_key, arrival, data, ts, key, window_start, "
    "window_end), run by SQLite once per window; each row is a result. JSON fields as "
    "data->>'field'; percentile(x, p) and median(x) besides SQLite's aggregates.", NULL },
  { "anomaly_value", KEY_STRING, AOFF (anomaly_value), "", 0, 0, NULL,
    "SQL giving a number to score per record and key (a streaming z-score); \"\": none.",
    NULL },
  { "anomaly_threshold", KEY_STRING, AOFF (anomaly_threshold), "3", 0, 0, NULL,
    "A record whose |z| reaches this is written to output as an anomaly.", NULL },
  { "anomaly_min_samples", KEY_INT, AOFF (anomaly_min_samples), "20", 2, 1000000, NULL,
    "Values a key needs before its records are scored.", NULL },
  { "starting_position", KEY_ENUM, AOFF (starting_position), "TRIM_HORIZON", 0, 0,
    starting_positions, "Where reading starts the first time; later, where it stopped.", NULL },
};

static const ListSpec analytics_list = { analytics_keys, G_N_ELEMENTS (analytics_keys),
                                         sizeof (EdgeConfigAnalytics), "name", 64 };

#define VOFF(field) G_STRUCT_OFFSET (EdgeConfigVideoUpload, field)

static const ConfigKey video_upload_keys[] = {
  { "name", KEY_STRING, VOFF (name), NULL, 0, 0, NULL,
    "Upload name: 1 to 64 of a-z, A-Z, 0-9, _ . and -.", NULL },
  { "camera", KEY_STRING, VOFF (camera), NULL, 0, 0, NULL, "The camera whose recording is copied.",
    NULL },
  { "endpoint", KEY_STRING, VOFF (endpoint), NULL, 0, 0, NULL,
    "The S3-compatible server, http(s)://HOST[:PORT] (path-style requests).", NULL },
  { "bucket", KEY_STRING, VOFF (bucket), NULL, 0, 0, NULL, "The bucket.", NULL },
  { "region", KEY_STRING, VOFF (region), "us-east-1", 0, 0, NULL, "The region signed for.",
    NULL },
  { "access_key_id", KEY_STRING, VOFF (access_key_id), NULL, 0, 0, NULL,
    "The access key requests are signed with (SigV4).", NULL },
  { "secret_access_key", KEY_STRING, VOFF (secret_access_key), NULL, 0, 0, NULL, "Its secret.",
    NULL },
  { "prefix", KEY_STRING, VOFF (prefix), "", 0, 0, NULL,
    "Key prefix: objects are PREFIX CAMERA/init-ID.mp4, PREFIX CAMERA/YYYY/MM/DD/HH/"
    "NUMBER.m4s and an HLS playlist per hour, PREFIX CAMERA/YYYY/MM/DD/HH/index.m3u8.", NULL },
  { "retention", KEY_DURATION, VOFF (retention_ms), "0s", 0, 87600LL * 3600 * 1000, NULL,
    "How long the uploaded copy is kept (edged deletes older fragments and playlists there), "
    "apart from the camera's own retention_hours; 0s: kept.", NULL },
};

static const ListSpec video_upload_list = { video_upload_keys, G_N_ELEMENTS (video_upload_keys),
                                            sizeof (EdgeConfigVideoUpload), "name", 64 };

static const char *const gpio_edges[] = { "both", "rising", "falling", NULL };
static const char *const gpio_biases[] = { "as-is", "pull-up", "pull-down", "disabled", NULL };

#define GIOFF(field) G_STRUCT_OFFSET (EdgeConfigGpioInput, field)

static const ConfigKey gpio_input_keys[] = {
  { "name", KEY_STRING, GIOFF (name), NULL, 0, 0, NULL,
    "Sensor name (the records' partition key): 1 to 64 of a-z, A-Z, 0-9, _ . and -.", NULL },
  { "chip", KEY_STRING, GIOFF (chip), "gpiochip0", 0, 0, NULL,
    "GPIO chip: gpiochip0, /dev/gpiochip0, its label (pinctrl-rp1 on a Raspberry Pi 5) or "
    "number; replay:FILE replays edges recorded with gpiomon.", NULL },
  { "line", KEY_STRING, GIOFF (line), NULL, 0, 0, NULL,
    "Line offset on the chip (17 for GPIO17 on a Raspberry Pi) or line name (GPIO17).", NULL },
  { "edges", KEY_ENUM, GIOFF (edges), "both", 0, 0, gpio_edges,
    "both: each settled change of level is a record (a door contact); rising or falling: each "
    "such edge is one (a PIR's pulses).", NULL },
  { "active_low", KEY_BOOL, GIOFF (active_low), "false", 0, 0, NULL,
    "The line reads 1 when low (a contact to ground with a pull-up).", NULL },
  { "bias", KEY_ENUM, GIOFF (bias), "as-is", 0, 0, gpio_biases,
    "Pull resistor: as-is (the board's setting), pull-up, pull-down or disabled.", NULL },
  { "debounce", KEY_DURATION, GIOFF (debounce_ms), "20ms", 0, 10000, NULL,
    "A change counts once the line has held it this long; its record is stamped with its "
    "first edge. Single-edge inputs: edges closer than this to the last are dropped.", NULL },
  { "stream", KEY_STRING, GIOFF (stream), "gpio", 0, 0, NULL,
    "Data stream the records go to (made when missing).", NULL },
};

static const ListSpec gpio_input_list = { gpio_input_keys, G_N_ELEMENTS (gpio_input_keys),
                                          sizeof (EdgeConfigGpioInput), "name", 256 };

#define GOOFF(field) G_STRUCT_OFFSET (EdgeConfigGpioOutput, field)

static const ConfigKey gpio_output_keys[] = {
  { "name", KEY_STRING, GOOFF (name), NULL, 0, 0, NULL,
    "Output name, for PUT /v1/gpio/NAME: 1 to 64 of a-z, A-Z, 0-9, _ . and -.", NULL },
  { "chip", KEY_STRING, GOOFF (chip), "gpiochip0", 0, 0, NULL, "GPIO chip, as for inputs.",
    NULL },
  { "line", KEY_STRING, GOOFF (line), NULL, 0, 0, NULL, "Line offset or name.", NULL },
  { "active_low", KEY_BOOL, GOOFF (active_low), "false", 0, 0, NULL,
    "Value 1 drives the line low (relay boards that switch on low).", NULL },
  { "initial", KEY_INT, GOOFF (initial), "0", 0, 1, NULL,
    "Value set when edged starts (and left when it stops).", NULL },
  { "stream", KEY_STRING, GOOFF (stream), "gpio", 0, 0, NULL,
    "Data stream each change is recorded in; \"\" for none.", NULL },
};

static const ListSpec gpio_output_list = { gpio_output_keys, G_N_ELEMENTS (gpio_output_keys),
                                           sizeof (EdgeConfigGpioOutput), "name", 256 };

#define MBOFF(field) G_STRUCT_OFFSET (EdgeConfigMqttBroker, field)

static const ConfigKey mqtt_broker_keys[] = {
  { "name", KEY_STRING, MBOFF (name), NULL, 0, 0, NULL,
    "Broker name, which subscriptions and rules refer to.", NULL },
  { "host", KEY_STRING, MBOFF (host), "localhost", 0, 0, NULL, "Host name or address.", NULL },
  { "port", KEY_INT, MBOFF (port), "1883", 1, 65535, NULL, "TCP port (8883 is usual for TLS).",
    NULL },
  { "client_id", KEY_STRING, MBOFF (client_id), "", 0, 0, NULL,
    "MQTT client id; default edged-HOSTNAME-INSTANCE-NAME (INSTANCE from the data directory's "
    "instance id). The broker keeps the session (and the "
    "QoS 1 and 2 messages that arrive while edged is away) under it.", NULL },
  { "username", KEY_STRING, MBOFF (username), "", 0, 0, NULL, "User name, if the broker asks.",
    NULL },
  { "password", KEY_STRING, MBOFF (password), "", 0, 0, NULL, "Password for username.", NULL },
  { "tls_ca_file", KEY_PATH, MBOFF (tls_ca_file), "", 0, 0, NULL,
    "PEM file of the CA(s) the broker's certificate is checked against; set, the connection "
    "is TLS.", NULL },
  { "tls_cert_file", KEY_PATH, MBOFF (tls_cert_file), "", 0, 0, NULL,
    "PEM client certificate, for brokers that require one (with tls_key_file).", NULL },
  { "tls_key_file", KEY_PATH, MBOFF (tls_key_file), "", 0, 0, NULL,
    "PEM private key of tls_cert_file.", NULL },
  { "keepalive", KEY_DURATION, MBOFF (keepalive_ms), "30s", 5000, 65535 * 1000LL, NULL,
    "MQTT keepalive: a broker silent for 1.5 times this is taken as gone.", NULL },
  { "clean_session", KEY_BOOL, MBOFF (clean_session), "false", 0, 0, NULL,
    "Start a new session on each connect; false keeps the session, so that QoS 1 and 2 "
    "messages published while edged was disconnected are delivered when it is back.", NULL },
  { "reconnect_max", KEY_DURATION, MBOFF (reconnect_max_ms), "30s", 1000, 3600 * 1000, NULL,
    "Reconnects back off from 1 s, doubling, up to this.", NULL },
};

static const ListSpec mqtt_broker_list = { mqtt_broker_keys, G_N_ELEMENTS (mqtt_broker_keys),
                                           sizeof (EdgeConfigMqttBroker), "name", 16 };

#define MSOFF(field) G_STRUCT_OFFSET (EdgeConfigMqttSubscription, field)

static const ConfigKey mqtt_subscription_keys[] = {
  { "broker", KEY_STRING, MSOFF (broker), NULL, 0, 0, NULL, "Name of a broker in mqtt.brokers.",
    NULL },
  { "topic", KEY_STRING, MSOFF (topic), NULL, 0, 0, NULL,
    "Topic filter: sensors/+/telemetry, home/#.", NULL },
  { "stream", KEY_STRING, MSOFF (stream), NULL, 0, 0, NULL,
    "Data stream each message is put to, its payload the record's data byte for byte.", NULL },
  { "partition_key", KEY_STRING, MSOFF (partition_key), "${topic()}", 0, 0, NULL,
    "Partition key template: ${topic(2)} (a topic level), ${device.id} (a JSON field of the "
    "payload), ${clientid()}; text around is kept. An empty result falls back to the topic.",
    NULL },
  { "qos", KEY_INT, MSOFF (qos), "1", 0, 2, NULL,
    "Subscription QoS: 0 (messages may be lost), 1 (acknowledged only once durable: none "
    "lost, some possibly twice), 2 (taken as 1: see docs/internals/mqtt.md).", NULL },
};

static const ListSpec mqtt_subscription_list = { mqtt_subscription_keys,
                                                 G_N_ELEMENTS (mqtt_subscription_keys),
                                                 sizeof (EdgeConfigMqttSubscription), NULL, 1000 };

#define MROFF(field) G_STRUCT_OFFSET (EdgeConfigMqttRule, field)

static const ConfigKey mqtt_rule_keys[] = {
  { "name", KEY_STRING, MROFF (name), NULL, 0, 0, NULL,
    "Rule name: 1 to 64 of a-z, A-Z, 0-9, _ . and -.", NULL },
  { "broker", KEY_STRING, MROFF (broker), NULL, 0, 0, NULL, "Name of a broker in mqtt.brokers.",
    NULL },
  { "sql", KEY_STRING, MROFF (sql), NULL, 0, 0, NULL,
    "AWS IoT SQL: SELECT temperature, topic(2) AS device FROM 'sensors/+/telemetry' WHERE "
    "temperature > 30.", NULL },
  { "stream", KEY_STRING, MROFF (stream), "", 0, 0, NULL,
    "Action: put what the rule selected to this data stream.", NULL },
  { "partition_key", KEY_STRING, MROFF (partition_key), "${topic()}", 0, 0, NULL,
    "Partition key template for stream.", NULL },
  { "function", KEY_STRING, MROFF (function), "", 0, 0, NULL,
    "Action: invoke this function asynchronously with what the rule selected.", NULL },
  { "republish", KEY_STRING, MROFF (republish), "", 0, 0, NULL,
    "Action: publish what the rule selected to this topic (a template: alerts/${topic(2)}).",
    NULL },
  { "republish_qos", KEY_INT, MROFF (republish_qos), "0", 0, 2, NULL,
    "QoS of republish.", NULL },
};

static const ListSpec mqtt_rule_list = { mqtt_rule_keys, G_N_ELEMENTS (mqtt_rule_keys),
                                         sizeof (EdgeConfigMqttRule), "name", 1000 };

#define MPOFF(field) G_STRUCT_OFFSET (EdgeConfigMqttPublish, field)

static const ConfigKey mqtt_publish_keys[] = {
  { "stream", KEY_STRING, MPOFF (stream), NULL, 0, 0, NULL,
    "Data stream whose records are published, from the ones that arrive after the first start "
    "on, each at least once (a checkpoint survives restarts).", NULL },
  { "broker", KEY_STRING, MPOFF (broker), NULL, 0, 0, NULL, "Name of a broker in mqtt.brokers.",
    NULL },
  { "topic", KEY_STRING, MPOFF (topic), NULL, 0, 0, NULL,
    "Topic template over each record's data: events/${camera}, results/${topic()}.", NULL },
  { "qos", KEY_INT, MPOFF (qos), "1", 0, 2, NULL, "QoS of the messages.", NULL },
  { "retain", KEY_BOOL, MPOFF (retain), "false", 0, 0, NULL,
    "Publish as retained messages.", NULL },
};

static const ListSpec mqtt_publish_list = { mqtt_publish_keys, G_N_ELEMENTS (mqtt_publish_keys),
                                            sizeof (EdgeConfigMqttPublish), NULL, 1000 };

#define UPOFF(field) G_STRUCT_OFFSET (EdgeConfigUsagePlan, field)

static const ConfigKey usage_plan_keys[] = {
  { "name", KEY_STRING, UPOFF (name), NULL, 0, 0, NULL,
    "Plan name, given to API keys (POST /v1/keys {\"plan\": NAME}).", NULL },
  { "rate", KEY_INT, UPOFF (rate), "0", 0, 1000000, NULL,
    "Requests per second a key may make, on average; past it: 429 with Retry-After. "
    "0: no rate limit.", NULL },
  { "burst", KEY_INT, UPOFF (burst), "0", 0, 1000000, NULL,
    "Requests a key may make at once above the rate; 0: the rate (at least 1).", NULL },
  { "quota_per_day", KEY_INT, UPOFF (quota_per_day), "0", 0, G_MAXINT64, NULL,
    "Requests a key may make per UTC day; 0: no quota.", NULL },
};

static const ListSpec usage_plan_list = { usage_plan_keys, G_N_ELEMENTS (usage_plan_keys),
                                          sizeof (EdgeConfigUsagePlan), "name", 100 };

#define AGOFF(field) G_STRUCT_OFFSET (EdgeConfigAuthGroup, field)

static const ConfigKey auth_group_keys[] = {
  { "routes", KEY_STRING, AGOFF (routes), NULL, 0, 0, NULL,
    "Comma-separated: route patterns (/v1/cameras/{name}), path prefixes ending in * "
    "(/v1/streams/*) or route tags (@aws, @functions, @cameras, @ui, @system).", NULL },
  { "modes", KEY_STRING, AGOFF (modes), NULL, 0, 0, NULL,
    "Comma-separated credentials these routes take: api_key, jwt, sigv4, session, authorizer, "
    "or none (public).", NULL },
  { "usage_plan", KEY_STRING, AGOFF (usage_plan), "", 0, 0, NULL,
    "A usage plan every API key is held to on these routes (a key's own plan comes first).",
    NULL },
};

static const ListSpec auth_group_list = { auth_group_keys, G_N_ELEMENTS (auth_group_keys),
                                          sizeof (EdgeConfigAuthGroup), NULL, 100 };

static const char *const auth_enabled_choices[] = { "auto", "on", "off", NULL };

static const ConfigKey config_keys[] = {
  { "data_dir", KEY_PATH, OFF (data_dir), "edged-data", 0, 0, NULL,
    "Directory for the state database, keys, streams and recordings. Created with mode 0700; "
    "one daemon per directory. Relative to the config file's directory (to the current "
    "directory for the embedded default).", NULL },
  { "log.level", KEY_ENUM, OFF (log_level), "info", 0, 0, log_levels,
    "Lowest level of message written to stderr: error, warning, info or debug.", NULL },
  { "gateway.listen", KEY_LISTEN, OFF (gateway_listen), "127.0.0.1:8080", 0, 0, NULL,
    "HOST:PORT the HTTP/WebSocket gateway listens on ([::1]:8080 for IPv6, port 0 picks a "
    "free port).", NULL },
  { "gateway.tls.cert", KEY_PATH, OFF (gateway_tls_cert), "", 0, 0, NULL,
    "PEM certificate (chain) file; with gateway.tls.key, the gateway speaks HTTPS only.", NULL },
  { "gateway.tls.key", KEY_PATH, OFF (gateway_tls_key), "", 0, 0, NULL,
    "PEM private key file for gateway.tls.cert.", NULL },
  { "gateway.max_body_bytes", KEY_SIZE, OFF (gateway_max_body_bytes), "16MiB", 1024,
    1024LL * MiB, NULL,
    "Largest request body accepted; a larger declared Content-Length is refused with 413 "
    "before any of the body is read.", NULL },
  { "gateway.max_connections", KEY_INT, OFF (gateway_max_connections), "1024", 1, 65536, NULL,
    "Open client connections at most; connections past it are closed at once.", NULL },
  { "gateway.access_log", KEY_BOOL, OFF (gateway_access_log), "true", 0, 0, NULL,
    "Log one line per request (method, path, status, bytes, duration) at info level.", NULL },
  { "gateway.web_root", KEY_PATH, OFF (gateway_web_root), "", 0, 0, NULL,
    "Serve the web UI from this directory instead of the copy built into edged.", NULL },
  { "gateway.websocket.max_buffered_bytes", KEY_SIZE, OFF (gateway_ws_max_buffered_bytes),
    "8MiB", 64 * 1024, 1024LL * MiB, NULL,
    "Bytes queued for one WebSocket client at most; sends past it are dropped (live video "
    "skips to the next keyframe).", NULL },
  { "gateway.websocket.max_message_bytes", KEY_SIZE, OFF (gateway_ws_max_message_bytes),
    "1MiB", 125, 64LL * MiB, NULL,
    "Largest message a WebSocket client may send; a larger one closes the connection with "
    "code 1009.", NULL },
  { "gateway.websocket.stall_timeout", KEY_DURATION, OFF (gateway_ws_stall_timeout_ms), "15s",
    1000, 3600 * 1000, NULL,
    "A client whose queue stays full this long is disconnected (close code 1008).", NULL },
  { "gateway.max_connections_per_client", KEY_INT, OFF (gateway_max_connections_per_client),
    "128", 1, 65536, NULL,
    "Open connections from one client address at most; more are closed at once.", NULL },
  { "gateway.header_timeout", KEY_DURATION, OFF (gateway_header_timeout_ms), "20s", 1000,
    600 * 1000, NULL,
    "A client must send its request's head within this of connecting, and may not pause "
    "longer than this while sending a body, or is disconnected (slow clients holding "
    "connections open).", NULL },
  { "gateway.keepalive_timeout", KEY_DURATION, OFF (gateway_keepalive_timeout_ms), "60s", 0,
    3600 * 1000, NULL,
    "An HTTP/1.1 connection (plain or HTTPS) is kept open between requests for this long; 0s "
    "ends every connection after its answer.", NULL },
  { "gateway.auth.enabled", KEY_ENUM, OFF (gateway_auth_enabled), "auto", 0, 0,
    auth_enabled_choices,
    "Ask for credentials on every route: on, off, or auto (on unless gateway.listen is a "
    "loopback address). With it on and no API key yet, an admin key is written to "
    "DATA_DIR/admin.key.", NULL },
  { "gateway.auth.modes", KEY_STRING, OFF (gateway_auth_modes), "api_key, jwt, sigv4, session",
    0, 0, NULL,
    "Credentials routes take unless a group says otherwise (see gateway.auth.groups).", NULL },
  { "gateway.auth.session_ttl", KEY_DURATION, OFF (gateway_auth_session_ttl_ms), "12h", 60000,
    30LL * 24 * 3600 * 1000, NULL,
    "How long a browser session (POST /v1/login) lasts.", NULL },
  { "gateway.auth.jwt.issuer", KEY_STRING, OFF (gateway_auth_jwt_issuer), "", 0, 0, NULL,
    "Required iss claim of bearer tokens; empty: not checked.", NULL },
  { "gateway.auth.jwt.audience", KEY_STRING, OFF (gateway_auth_jwt_audience), "", 0, 0, NULL,
    "Required aud claim (or one of them); empty: not checked.", NULL },
  { "gateway.auth.jwt.secret_file", KEY_PATH, OFF (gateway_auth_jwt_secret_file), "", 0, 0, NULL,
    "File holding the HS256 secret (at least 32 bytes).", NULL },
  { "gateway.auth.jwt.public_key_file", KEY_PATH, OFF (gateway_auth_jwt_public_key_file), "", 0,
    0, NULL, "PEM public key for RS256 (RSA, 2048 bits or more) or ES256 (P-256) tokens.",
    NULL },
  { "gateway.auth.jwt.jwks_file", KEY_PATH, OFF (gateway_auth_jwt_jwks_file), "", 0, 0, NULL,
    "JWKS file ({\"keys\": [...]}: RSA, EC P-256 and oct keys, chosen by kid).", NULL },
  { "gateway.auth.jwt.admin_scope", KEY_STRING, OFF (gateway_auth_jwt_admin_scope),
    "edged:admin", 0, 0, NULL,
    "A token whose scope claim holds this may manage API keys.", NULL },
  { "gateway.auth.jwt.leeway", KEY_DURATION, OFF (gateway_auth_jwt_leeway_ms), "60s", 0,
    3600 * 1000, NULL, "Clock skew allowed on exp, nbf and iat.", NULL },
  { "gateway.auth.sigv4.credentials_file", KEY_PATH, OFF (gateway_auth_sigv4_credentials_file),
    "", 0, 0, NULL,
    "AWS credentials file ([profile] aws_access_key_id, aws_secret_access_key) whose keys "
    "may sign requests (the AWS CLI and SDKs); they are administrators.", NULL },
  { "gateway.auth.sigv4.region", KEY_STRING, OFF (gateway_auth_sigv4_region), "", 0, 0, NULL,
    "Region signatures must be scoped to; empty: any.", NULL },
  { "gateway.auth.sigv4.replay_window", KEY_DURATION, OFF (gateway_auth_sigv4_replay_window_ms),
    "5m", 1000, 3600 * 1000, NULL,
    "A signed request is refused when its X-Amz-Date is further than this from the server's "
    "clock (AWS: 5 minutes).", NULL },
  { "gateway.auth.authorizer.function", KEY_STRING, OFF (gateway_auth_authorizer_function), "", 0,
    0, NULL,
    "Function answering for groups with mode authorizer: it gets API Gateway's REQUEST "
    "authorizer event (2.0) and answers {\"isAuthorized\": bool, \"context\": {...}}.", NULL },
  { "gateway.auth.authorizer.identity", KEY_STRING, OFF (gateway_auth_authorizer_identity),
    "Authorization", 0, 0, NULL,
    "Header the authorizer decides on (missing: 401 without calling it); answers are cached "
    "by its value.", NULL },
  { "gateway.auth.authorizer.ttl", KEY_DURATION, OFF (gateway_auth_authorizer_ttl_ms), "300s", 0,
    3600 * 1000, NULL, "How long an authorizer's answer is reused; 0: ask every time.", NULL },
  { "gateway.auth.usage_plans", KEY_LIST, OFF (usage_plans), NULL, 0, 0, NULL,
    "Usage plans: rate, burst and daily quota for the API keys given them.", &usage_plan_list },
  { "gateway.auth.groups", KEY_LIST, OFF (auth_groups), NULL, 0, 0, NULL,
    "Route groups with their own credentials, first match wins; other routes take "
    "gateway.auth.modes. The login page and its assets are always public.", &auth_group_list },
  { "gateway.cors.allow_origins", KEY_STRING, OFF (gateway_cors_allow_origins), "", 0, 0, NULL,
    "Comma-separated origins (https://app.example.com) other sites' pages may call from, or *; "
    "empty: same origin only.", NULL },
  { "gateway.cors.allow_methods", KEY_STRING, OFF (gateway_cors_allow_methods),
    "GET, POST, PUT, DELETE, OPTIONS", 0, 0, NULL, "Methods a preflight allows.", NULL },
  { "gateway.cors.allow_headers", KEY_STRING, OFF (gateway_cors_allow_headers),
    "authorization, content-type, x-api-key, x-amz-date, x-amz-target, x-amz-content-sha256, "
    "x-amz-security-token, x-amz-user-agent, amz-sdk-invocation-id, amz-sdk-request",
    0, 0, NULL, "Request headers a preflight allows.", NULL },
  { "gateway.cors.expose_headers", KEY_STRING, OFF (gateway_cors_expose_headers),
    "x-amzn-requestid, x-amzn-errortype, x-amz-function-error, x-amz-log-result, retry-after",
    0, 0, NULL, "Response headers other origins' scripts may read.", NULL },
  { "gateway.cors.max_age", KEY_DURATION, OFF (gateway_cors_max_age_ms), "600s", 0,
    86400 * 1000, NULL, "How long browsers may cache a preflight's answer.", NULL },
  { "gateway.cors.allow_credentials", KEY_BOOL, OFF (gateway_cors_allow_credentials), "false", 0,
    0, NULL, "Let other origins send cookies (the session) along.", NULL },
  { "keys.master_key_file", KEY_PATH, OFF (keys_master_key_file), "", 0, 0, NULL,
    "Master key file (mode 0600, created on first start). Default: DATA_DIR/master.key. "
    "Losing it makes encrypted data unreadable: back it up apart from the data.", NULL },
  { "storage.min_free_bytes", KEY_SIZE, OFF (storage_min_free_bytes), "64MiB", 0,
    1024LL * 1024 * MiB, NULL,
    "Writes are refused (Kinesis: ProvisionedThroughputExceededException, so clients back off "
    "and retry) while the disk holding the data has less free space than this; 0: only a full "
    "disk stops them.", NULL },
  { "storage.video_reserve_bytes", KEY_SIZE, OFF (storage_video_reserve_bytes), "256MiB", 0,
    1024LL * 1024 * MiB, NULL,
    "Recordings are removed, oldest first across all cameras, while the disk holding the data "
    "has less free space than storage.min_free_bytes plus this: video makes room before data "
    "streams would refuse writes.", NULL },
  { "streams", KEY_LIST, OFF (streams), NULL, 0, 0, NULL,
    "Data streams to create at start if missing (an existing stream is kept, its retention "
    "updated).", &stream_list },
  { "cameras", KEY_LIST, OFF (cameras), NULL, 0, 0, NULL,
    "Cameras recorded from start (more can be added at run time with POST /v1/cameras).",
    &camera_list },
  { "functions", KEY_LIST, OFF (functions), NULL, 0, 0, NULL,
    "Functions (handlers run on demand through the Lambda Runtime API, invoked with the Lambda "
    "Invoke API).", &function_list },
  { "schedules", KEY_LIST, OFF (schedules), NULL, 0, 0, NULL,
    "Functions invoked on a schedule (EventBridge's rate and cron expressions).",
    &schedule_list },
  { "routes", KEY_LIST, OFF (routes), NULL, 0, 0, NULL,
    "HTTP routes on the gateway served by functions (an HTTP API).", &route_list },
  { "event_source_mappings", KEY_LIST, OFF (mappings), NULL, 0, 0, NULL,
    "Functions invoked with the records of data streams, in order per shard, with checkpoints "
    "(Lambda's Kinesis event source mappings).", &mapping_list },
  { "websockets", KEY_LIST, OFF (websockets), NULL, 0, 0, NULL,
    "WebSocket APIs served by functions ($connect, $disconnect, $default), with "
    "/@connections/ID to send to a client.", &websocket_list },
  { "websocket_routes", KEY_LIST, OFF (websocket_routes), NULL, 0, 0, NULL,
    "Custom routes of WebSocket APIs, chosen by each message's \"action\".",
    &websocket_route_list },
  { "mqtt.brokers", KEY_LIST, OFF (mqtt_brokers), NULL, 0, 0, NULL,
    "MQTT brokers edged connects to, reconnecting with back-off.", &mqtt_broker_list },
  { "mqtt.subscriptions", KEY_LIST, OFF (mqtt_subscriptions), NULL, 0, 0, NULL,
    "Topic filters whose messages go into data streams; with QoS 1 a message is acknowledged "
    "to the broker only once it is durable in the stream.", &mqtt_subscription_list },
  { "mqtt.rules", KEY_LIST, OFF (mqtt_rules), NULL, 0, 0, NULL,
    "Topic rules (AWS IoT SQL) and their actions: put to a stream, invoke a function, "
    "republish.", &mqtt_rule_list },
  { "mqtt.publish", KEY_LIST, OFF (mqtt_publish), NULL, 0, 0, NULL,
    "Data streams published to MQTT topics: detection events, function results.",
    &mqtt_publish_list },
  { "mqtt.demo.broker", KEY_STRING, OFF (mqtt_demo_broker), "", 0, 0, NULL,
    "Broker (a name in mqtt.brokers) that three demo sensors publish readings to, on "
    "sensors/demo-N/telemetry; \"\" for none.", NULL },
  { "mqtt.demo.interval", KEY_DURATION, OFF (mqtt_demo_interval_ms), "1s", 100, 3600 * 1000,
    NULL, "How often each demo sensor publishes.", NULL },
  { "mqtt.home_assistant.discovery", KEY_BOOL, OFF (mqtt_home_assistant), "false", 0, 0, NULL,
    "Announce sensors to Home Assistant (MQTT discovery): each numeric field of the JSON "
    "messages on mqtt.subscriptions becomes a sensor entity that reads the sensor's own topic.",
    NULL },
  { "mqtt.home_assistant.prefix", KEY_STRING, OFF (mqtt_home_assistant_prefix), "homeassistant",
    0, 0, NULL, "Home Assistant's discovery prefix.", NULL },
  { "delivery_streams", KEY_LIST, OFF (deliveries), NULL, 0, 0, NULL,
    "Delivery streams (Firehose): a data stream's records, buffered, optionally compressed, "
    "delivered to a directory, S3-compatible storage or an HTTP endpoint, checkpointed only "
    "once the destination has them.", &delivery_list },
  { "delivery.s3.endpoint", KEY_STRING, OFF (delivery_s3_endpoint), "", 0, 0, NULL,
    "The S3-compatible server (http(s)://HOST[:PORT]) that delivery streams made with the "
    "Firehose API (CreateDeliveryStream) deliver to; their BucketARN names the bucket.", NULL },
  { "delivery.s3.region", KEY_STRING, OFF (delivery_s3_region), "us-east-1", 0, 0, NULL,
    "Its region.", NULL },
  { "delivery.s3.access_key_id", KEY_STRING, OFF (delivery_s3_access_key_id), "", 0, 0, NULL,
    "The access key those requests are signed with.", NULL },
  { "delivery.s3.secret_access_key", KEY_STRING, OFF (delivery_s3_secret_access_key), "", 0, 0,
    NULL, "Its secret.", NULL },
  { "forwarders", KEY_LIST, OFF (forwarders), NULL, 0, 0, NULL,
    "Forwarders: a data stream mirrored upstream (a Kinesis-compatible endpoint or NATS "
    "JetStream), at least once, in order per partition key, resuming from the local log after "
    "any outage.", &forwarder_list },
  { "analytics", KEY_LIST, OFF (analytics), NULL, 0, 0, NULL,
    "Analytics applications: SQL over tumbling, sliding or session windows of a data stream, "
    "evaluated by SQLite, with an anomaly score per key; results go to another data stream.",
    &analytics_list },
  { "video_uploads", KEY_LIST, OFF (video_uploads), NULL, 0, 0, NULL,
    "Video uploads: a camera's recording copied to S3-compatible storage as it is made, "
    "fragment by fragment, with an HLS playlist per hour; resumes after outages; the copy has "
    "its own retention.", &video_upload_list },
  { "gpio.inputs", KEY_LIST, OFF (gpio_inputs), NULL, 0, 0, NULL,
    "GPIO input lines (a PIR motion sensor, a door contact): each debounced edge becomes a "
    "record in a data stream.", &gpio_input_list },
  { "gpio.outputs", KEY_LIST, OFF (gpio_outputs), NULL, 0, 0, NULL,
    "GPIO output lines (a relay), set with PUT /v1/gpio/NAME, from the API or from functions.",
    &gpio_output_list },
};

gboolean
edge_name_valid (const char *name, gsize max)
{
  gsize n = name ? strlen (name) : 0;
  if (n == 0 || n > max || g_str_equal (name, ".") || g_str_equal (name, ".."))
    return FALSE;
  for (gsize i = 0; i < n; i++)
    if (!g_ascii_isalnum (name[i]) && !strchr ("_.-", name[i]))
      return FALSE;
  return TRUE;
}

static const ConfigKey *
config_key_lookup (const char *key)
{
  for (gsize i = 0; i < G_N_ELEMENTS (config_keys); i++)
    if (g_str_equal (config_keys[i].key, key))
      return &config_keys[i];
  return NULL;
}

/* TRUE when @prefix names a section: some key starts with "prefix.". */
static gboolean
config_is_section (const char *prefix)
{
  gsize n = strlen (prefix);
  for (gsize i = 0; i < G_N_ELEMENTS (config_keys); i++)
    if (strncmp (config_keys[i].key, prefix, n) == 0 && config_keys[i].key[n] == '.')
      return TRUE;
  return FALSE;
}

/* --- value parsers: pure, each returns FALSE with a message naming what it expected --- */

static gboolean
parse_int_with_units (const char *text, const char *const *units, const gint64 *factors,
                      gint64 *ret_value)
{
  const char *p = text;
  char *end = NULL;
  guint64 number;
  gint64 factor = 1;

  while (g_ascii_isspace (*p))
    p++;
  if (!g_ascii_isdigit (*p))
    return FALSE;
  errno = 0;
  number = g_ascii_strtoull (p, &end, 10);
  if (errno != 0 || end == p)
    return FALSE;
  while (g_ascii_isspace (*end))
    end++;
  if (*end != '\0') {
    gboolean found = FALSE;
    for (gsize i = 0; units[i] != NULL; i++) {
      if (g_ascii_strcasecmp (end, units[i]) == 0) {
        factor = factors[i];
        found = TRUE;
        break;
      }
    }
    if (!found)
      return FALSE;
  }
  if (number > (guint64) (G_MAXINT64 / factor))
    return FALSE;
  *ret_value = (gint64) number * factor;
  return TRUE;
}

static gboolean
parse_size (const char *text, gint64 *ret_value)
{
  static const char *const units[] = { "B", "K", "KB", "KiB", "M", "MB", "MiB", "G", "GB", "GiB",
                                       NULL };
  static const gint64 factors[] = { 1, 1 << 10, 1 << 10, 1 << 10, 1 << 20, 1 << 20, 1 << 20,
                                    1 << 30, 1 << 30, 1 << 30 };
  return parse_int_with_units (text, units, factors, ret_value);
}

static gboolean
parse_duration (const char *text, gint64 *ret_value)
{
  static const char *const units[] = { "ms", "s", "m", "min", "h", NULL };
  static const gint64 factors[] = { 1, 1000, 60000, 60000, 3600000 };
  gint64 value;

  /* A bare number is ambiguous for a duration: ask for the unit. */
  if (g_ascii_string_to_signed (text, 10, 0, G_MAXINT64, &value, NULL))
    return FALSE;
  return parse_int_with_units (text, units, factors, ret_value);
}

static gboolean
parse_bool (const char *text, gboolean *ret_value)
{
  static const char *const yes[] = { "true", "yes", "on", NULL };
  static const char *const no[] = { "false", "no", "off", NULL };
  for (gsize i = 0; yes[i]; i++)
    if (g_ascii_strcasecmp (text, yes[i]) == 0) {
      *ret_value = TRUE;
      return TRUE;
    }
  for (gsize i = 0; no[i]; i++)
    if (g_ascii_strcasecmp (text, no[i]) == 0) {
      *ret_value = FALSE;
      return TRUE;
    }
  return FALSE;
}

gboolean
edge_config_parse_listen (const char *listen, char **ret_host, guint16 *ret_port, GError **error)
{
  const char *colon;
  g_autofree char *host = NULL;
  guint64 port;

  if (listen[0] == '[') {
    const char *close = strchr (listen, ']');
    if (close == NULL || close[1] != ':')
      goto bad;
    host = g_strndup (listen + 1, close - listen - 1);
    colon = close + 1;
    if (!g_hostname_is_ip_address (host) || strchr (host, ':') == NULL)
      goto bad;
  } else {
    colon = strrchr (listen, ':');
    if (colon == NULL || colon == listen)
      goto bad;
    host = g_strndup (listen, colon - listen);
    if (strchr (host, ':') != NULL) /* an IPv6 address needs brackets */
      goto bad;
    for (const char *p = host; *p; p++)
      if (!g_ascii_isalnum (*p) && *p != '.' && *p != '-')
        goto bad;
  }
  if (!g_ascii_string_to_unsigned (colon + 1, 10, 0, 65535, &port, NULL))
    goto bad;

  if (ret_host)
    *ret_host = g_steal_pointer (&host);
  if (ret_port)
    *ret_port = (guint16) port;
  return TRUE;

bad:
  g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
               "expected HOST:PORT, got \"%s\"", listen);
  return FALSE;
}

/* 16777216 -> "16MiB": the form a user writes in the file. */
static char *
format_size (gint64 v)
{
  if (v != 0 && v % (1 << 30) == 0)
    return g_strdup_printf ("%" G_GINT64_FORMAT "GiB", v >> 30);
  if (v != 0 && v % (1 << 20) == 0)
    return g_strdup_printf ("%" G_GINT64_FORMAT "MiB", v >> 20);
  if (v != 0 && v % (1 << 10) == 0)
    return g_strdup_printf ("%" G_GINT64_FORMAT "KiB", v >> 10);
  return g_strdup_printf ("%" G_GINT64_FORMAT, v);
}

static char *
describe_range (const ConfigKey *k)
{
  switch (k->type) {
  case KEY_SIZE: {
    g_autofree char *lo = format_size (k->min);
    g_autofree char *hi = format_size (k->max);
    return g_strdup_printf ("a size from %s to %s (e.g. 16MiB)", lo, hi);
  }
  case KEY_DURATION:
    return g_strdup_printf ("a duration from %" G_GINT64_FORMAT "ms to %" G_GINT64_FORMAT "s",
                            k->min, k->max / 1000);
  default:
    return g_strdup_printf ("an integer from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT, k->min,
                            k->max);
  }
}

/* Stores @text, already known to be a scalar, into @config for @k.
 * On failure @error holds "expected ..., got ..." without position. */
static gboolean
config_set_value (void *base, const ConfigKey *k, const char *text, const char *base_dir,
                  GError **error)
{
  guint8 *field = (guint8 *) base + k->offset;
  gint64 number = 0;
  gboolean flag = FALSE;

  switch (k->type) {
  case KEY_STRING:
  case KEY_PATH: {
    char **slot = (char **) field;
    char *value;
    if (k->type == KEY_PATH && text[0] != '\0' && !g_path_is_absolute (text) && base_dir)
      value = g_build_filename (base_dir, text, NULL);
    else
      value = g_strdup (text);
    g_free (*slot);
    *slot = value;
    return TRUE;
  }
  case KEY_LISTEN:
    if (!edge_config_parse_listen (text, NULL, NULL, error))
      return FALSE;
    g_free (*(char **) field);
    *(char **) field = g_strdup (text);
    return TRUE;
  case KEY_ENUM:
    for (gsize i = 0; k->choices[i]; i++) {
      if (g_str_equal (k->choices[i], text)) {
        g_free (*(char **) field);
        *(char **) field = g_strdup (text);
        return TRUE;
      }
    }
    {
      g_autofree char *list = g_strjoinv (", ", (char **) k->choices);
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "expected one of %s, got \"%s\"", list, text);
    }
    return FALSE;
  case KEY_BOOL:
    if (!parse_bool (text, &flag)) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "expected true or false, got \"%s\"", text);
      return FALSE;
    }
    *(gboolean *) field = flag;
    return TRUE;
  case KEY_INT:
  case KEY_SIZE:
  case KEY_DURATION: {
    gboolean ok;
    if (k->type == KEY_INT)
      ok = g_ascii_string_to_signed (text, 10, G_MININT64, G_MAXINT64, &number, NULL);
    else if (k->type == KEY_SIZE)
      ok = parse_size (text, &number);
    else
      ok = parse_duration (text, &number);
    if (!ok || number < k->min || number > k->max) {
      g_autofree char *range = describe_range (k);
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID, "expected %s, got \"%s\"",
                   range, text);
      return FALSE;
    }
    *(gint64 *) field = number;
    return TRUE;
  }
  case KEY_LIST:
    break;
  case KEY_ENV:
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                 "expected a mapping of NAME: value");
    return FALSE;
  }
  g_assert_not_reached ();
}

static void fields_free (void *base, const ConfigKey *keys, gsize n);

/* Fills the fields of @base from the defaults of @keys. Keys without a
 * default (required item keys) start as "". */
static void
fields_init (void *base, const ConfigKey *keys, gsize n)
{
  for (gsize i = 0; i < n; i++) {
    const ConfigKey *k = &keys[i];
    g_autoptr (GError) error = NULL;
    guint8 *field = (guint8 *) base + k->offset;
    if (is_string_type (k->type))
      *(char **) field = g_strdup ("");
    if (k->type == KEY_LIST) {
      /* The item structs themselves; fields_free knows their table. */
      *(GPtrArray **) field = g_ptr_array_new ();
      continue;
    }
    if (k->type == KEY_ENV) {
      *(char ***) field = g_new0 (char *, 1);
      continue;
    }
    if (k->default_value && !config_set_value (base, k, k->default_value, NULL, &error))
      g_error ("config table: default of %s is invalid: %s", k->key, error->message);
  }
}

static void
fields_free (void *base, const ConfigKey *keys, gsize n)
{
  for (gsize i = 0; i < n; i++) {
    const ConfigKey *k = &keys[i];
    guint8 *field = (guint8 *) base + k->offset;
    if (is_string_type (k->type))
      g_free (*(char **) field);
    if (k->type == KEY_ENV)
      g_strfreev (*(char ***) field);
    if (k->type == KEY_LIST) {
      GPtrArray *items = *(GPtrArray **) field;
      for (guint j = 0; items && j < items->len; j++) {
        fields_free (g_ptr_array_index (items, j), k->list->keys, k->list->n_keys);
        g_free (g_ptr_array_index (items, j));
      }
      if (items)
        g_ptr_array_unref (items);
    }
  }
}

EdgeConfig *
edge_config_new_default (void)
{
  EdgeConfig *config = g_new0 (EdgeConfig, 1);
  fields_init (config, config_keys, G_N_ELEMENTS (config_keys));
  return config;
}

static void
set_string (char **field, const char *value)
{
  g_free (*field);
  *field = g_strdup (value);
}

/* A new item of a list (@items, its table @keys), at its defaults,
 * appended to it. */
#define ITEM_NEW(items, type, keys) \
  ((type *) item_new ((items), (keys), G_N_ELEMENTS (keys), sizeof (type)))

static gpointer
item_new (GPtrArray *items, const ConfigKey *keys, gsize n_keys, gsize size)
{
  gpointer item = g_malloc0 (size);
  fields_init (item, keys, n_keys);
  g_ptr_array_add (items, item);
  return item;
}

EdgeConfig *
edge_config_new_embedded (const char *sample_bootstrap)
{
  EdgeConfig *config = edge_config_new_default ();
  if (sample_bootstrap) {
    EdgeConfigFunction *hello = ITEM_NEW (config->functions, EdgeConfigFunction, function_keys);
    set_string (&hello->name, "hello");
    set_string (&hello->bootstrap, sample_bootstrap);
    hello->idle_ms = 60 * 1000;
  }
  /* Demo sensors on a broker on this machine, when there is one: their
   * readings land in "sensors", and a rule picks out the warm ones. */
  static const char *const stream_names[] = { "sensors", "events" };
  for (gsize i = 0; i < G_N_ELEMENTS (stream_names); i++)
    set_string (&ITEM_NEW (config->streams, EdgeConfigStream, stream_keys)->name,
                stream_names[i]);
  EdgeConfigMqttBroker *broker = ITEM_NEW (config->mqtt_brokers, EdgeConfigMqttBroker,
                                           mqtt_broker_keys);
  set_string (&broker->name, "local");
  set_string (&broker->host, "127.0.0.1");
  EdgeConfigMqttSubscription *sub = ITEM_NEW (config->mqtt_subscriptions,
                                              EdgeConfigMqttSubscription, mqtt_subscription_keys);
  set_string (&sub->broker, "local");
  set_string (&sub->topic, "sensors/#");
  set_string (&sub->stream, "sensors");
  set_string (&sub->partition_key, "${topic(2)}");
  EdgeConfigMqttRule *rule = ITEM_NEW (config->mqtt_rules, EdgeConfigMqttRule, mqtt_rule_keys);
  set_string (&rule->name, "too-warm");
  set_string (&rule->broker, "local");
  /* A threshold on the demo sensors: an event like a camera's, in the
   * same stream, so the same function runs for both. */
  set_string (&rule->sql, "SELECT 'too-warm' AS type, sensor, room, temperature, "
                          "timestamp() AS start_ms FROM 'sensors/+/telemetry' "
                          "WHERE temperature > 30");
  set_string (&rule->stream, "events");
  set_string (&rule->partition_key, "${sensor}");
  set_string (&rule->republish, "alerts/${topic(2)}");
  set_string (&config->mqtt_demo_broker, "local");

  EdgeConfigCamera *demo = ITEM_NEW (config->cameras, EdgeConfigCamera, camera_keys);
  set_string (&demo->name, "demo");
  /* A still scene a ball visits now and then, watched for motion; the
   * burnt-in times (top left, bottom right) change every frame and are
   * left out of it. */
  set_string (&demo->source, "test://?pattern=visitor");
  demo->retention_hours = 1;
  set_string (&demo->detect, "motion");
  set_string (&demo->zones, "exclude 0,0 0.4,0 0.4,0.12 0,0.12; "
                            "exclude 0.45,0.84 1,0.84 1,1 0.45,1");

  /* Every detection runs the sample function, and goes out over MQTT. */
  if (sample_bootstrap) {
    EdgeConfigMapping *mapping = ITEM_NEW (config->mappings, EdgeConfigMapping, mapping_keys);
    set_string (&mapping->stream, "events");
    set_string (&mapping->function, "hello");
  }
  EdgeConfigMqttPublish *publish = ITEM_NEW (config->mqtt_publish, EdgeConfigMqttPublish,
                                             mqtt_publish_keys);
  set_string (&publish->stream, "events");
  set_string (&publish->broker, "local");
  set_string (&publish->topic, "edged/events/${type}");
  return config;
}

void
edge_config_free (EdgeConfig *config)
{
  if (config == NULL)
    return;
  fields_free (config, config_keys, G_N_ELEMENTS (config_keys));
  g_free (config);
}

/* --- the YAML walk --- */

typedef struct {
  yaml_document_t *doc;
  const char *name;
  const char *base_dir;
  EdgeConfig *config;
} Loader;

static guint
node_line (const yaml_node_t *node)
{
  return (guint) node->start_mark.line + 1;
}

static const char *
node_kind (const yaml_node_t *node)
{
  switch (node->type) {
  case YAML_MAPPING_NODE:
    return "a mapping";
  case YAML_SEQUENCE_NODE:
    return "a list";
  default:
    return "a scalar";
  }
}

/* Levenshtein distance between @a (@n bytes) and @b (@m bytes), two rows;
 * G_MAXUINT for names too long to be worth a hint. */
static guint
edit_distance (const char *a, gsize n, const char *b, gsize m)
{
  guint prev[65], cur[65];
  if (n > 64 || m > 64)
    return G_MAXUINT;
  for (gsize j = 0; j <= m; j++)
    prev[j] = j;
  for (gsize i = 1; i <= n; i++) {
    cur[0] = i;
    for (gsize j = 1; j <= m; j++)
      cur[j] = MIN (MIN (prev[j] + 1, cur[j - 1] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
    memcpy (prev, cur, sizeof (guint) * (m + 1));
  }
  return prev[m];
}

/* Suggest only near misses. */
#define HINT_MAX_DISTANCE 2

/* The known key (or section) closest to @key, for "did you mean" hints;
 * NULL if none is close. (transfer full) */
static char *
closest_key (const char *key)
{
  char *best = NULL;
  guint best_distance = HINT_MAX_DISTANCE + 1;
  guint dots = 0;

  for (const char *p = key; *p; p++)
    dots += *p == '.';
  for (gsize i = 0; i < G_N_ELEMENTS (config_keys); i++) {
    /* Compare with the table key cut to as many dots as @key has. */
    const char *candidate = config_keys[i].key;
    const char *end = candidate;
    for (guint d = 0; *end; end++)
      if (*end == '.' && d++ == dots)
        break;
    guint distance = edit_distance (key, strlen (key), candidate, end - candidate);
    if (distance > 0 && distance < best_distance) {
      best_distance = distance;
      g_free (best);
      best = g_strndup (candidate, end - candidate);
    }
  }
  return best;
}

/* A scalar, already known to be one, as the text to validate; NULL for a
 * plain "~", "null" or nothing (keep the default). FALSE on a NUL inside. */
static gboolean
scalar_text (Loader *loader, yaml_node_t *value, const char *key, const char **ret, GError **error)
{
  const char *text = (const char *) value->data.scalar.value;
  if (strlen (text) != value->data.scalar.length) {
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                 "%s:%u: %s: the value contains a NUL character", loader->name, node_line (value),
                 key);
    return FALSE;
  }
  if (value->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
      (g_str_equal (text, "~") || g_str_equal (text, "null") || text[0] == '\0'))
    text = NULL;
  *ret = text;
  return TRUE;
}

/* Names Lambda sets itself and does not let a function set. */
static const char *const reserved_environment[] = {
  "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
  "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
  "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
  "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
  "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", NULL,
};

/* Environment variables in all, names and values, at most (Lambda's). */
#define ENVIRONMENT_MAX_BYTES 4096

static gboolean
valid_environment_name (const char *name)
{
  if (!g_ascii_isalpha (name[0]))
    return FALSE;
  for (const char *p = name; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '_')
      return FALSE;
  return TRUE;
}

/* A mapping of NAME: value into @ret ("NAME=value" strings). */
static gboolean
load_environment (Loader *loader, yaml_node_t *node, const char *key, char ***ret,
                  GError **error)
{
  if (node->type == YAML_SCALAR_NODE) {
    const char *text;
    if (!scalar_text (loader, node, key, &text, error))
      return FALSE;
    if (text == NULL)
      return TRUE; /* "environment:" with nothing: none */
  }
  if (node->type != YAML_MAPPING_NODE) {
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                 "%s:%u: %s: expected a mapping of NAME: value, got %s", loader->name,
                 node_line (node), key, node_kind (node));
    return FALSE;
  }
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();
  g_autoptr (GHashTable) names = g_hash_table_new (g_str_hash, g_str_equal);
  gsize total = 0;
  for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
       pair < node->data.mapping.pairs.top; pair++) {
    yaml_node_t *kn = yaml_document_get_node (loader->doc, pair->key);
    yaml_node_t *vn = yaml_document_get_node (loader->doc, pair->value);
    if (kn == NULL || vn == NULL)
      continue;
    const char *name = kn->type == YAML_SCALAR_NODE ? (const char *) kn->data.scalar.value : "";
    if (!valid_environment_name (name)) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s:%u: %s: \"%s\" is not a variable name (a letter, then letters, digits "
                   "and _)", loader->name, node_line (kn), key, name);
      return FALSE;
    }
    if (g_strv_contains (reserved_environment, name)) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s:%u: %s: %s is reserved: edged sets it", loader->name, node_line (kn), key,
                   name);
      return FALSE;
    }
    if (!g_hash_table_add (names, (gpointer) name)) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s:%u: %s: %s appears twice", loader->name, node_line (kn), key, name);
      return FALSE;
    }
    if (vn->type != YAML_SCALAR_NODE) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s:%u: %s.%s: expected a single value, got %s", loader->name,
                   node_line (vn), key, name, node_kind (vn));
      return FALSE;
    }
    const char *value;
    if (!scalar_text (loader, vn, key, &value, error))
      return FALSE;
    if (value == NULL)
      value = "";
    total += strlen (name) + strlen (value);
    if (total > ENVIRONMENT_MAX_BYTES) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s:%u: %s: more than %d bytes of variables", loader->name, node_line (vn),
                   key, ENVIRONMENT_MAX_BYTES);
      return FALSE;
    }
    g_autofree char *pair_text = g_strconcat (name, "=", value, NULL);
    g_strv_builder_add (builder, pair_text);
  }
  g_strfreev (*ret);
  *ret = g_strv_builder_end (builder);
  return TRUE;
}

static char *
closest_item_key (const ListSpec *spec, const char *name)
{
  const char *best = NULL;
  guint best_distance = HINT_MAX_DISTANCE + 1;
  for (gsize i = 0; i < spec->n_keys; i++) {
    const char *candidate = spec->keys[i].key;
    guint distance = edit_distance (name, strlen (name), candidate, strlen (candidate));
    if (distance > 0 && distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  return g_strdup (best);
}

/* Loads a list of mappings into the GPtrArray at @k's field. */
static gboolean
load_list (Loader *loader, const ConfigKey *k, yaml_node_t *value, const char *key, GError **error)
{
  const ListSpec *spec = k->list;
  GPtrArray *items = *(GPtrArray **) ((guint8 *) loader->config + k->offset);
  g_autoptr (GHashTable) unique = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  if (value->type == YAML_SCALAR_NODE && value->data.scalar.length == 0)
    return TRUE; /* "streams:" with nothing under it */
  if (value->type != YAML_SEQUENCE_NODE) {
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                 "%s:%u: %s: expected a list, got %s", loader->name, node_line (value), key,
                 node_kind (value));
    return FALSE;
  }
  guint index = 0;
  for (yaml_node_item_t *it = value->data.sequence.items.start; it < value->data.sequence.items.top;
       it++, index++) {
    yaml_node_t *item = yaml_document_get_node (loader->doc, *it);
    g_autofree char *where = g_strdup_printf ("%s[%u]", key, index);
    if (item == NULL)
      continue;
    if (index >= spec->max_items) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s:%u: %s: more than %zu entries", loader->name, node_line (item), key,
                   spec->max_items);
      return FALSE;
    }
    if (item->type != YAML_MAPPING_NODE) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s:%u: %s: expected a mapping of settings, got %s", loader->name,
                   node_line (item), where, node_kind (item));
      return FALSE;
    }
    void *fields = g_malloc0 (spec->item_size);
    fields_init (fields, spec->keys, spec->n_keys);
    g_ptr_array_add (items, fields);
    g_autofree gboolean *seen = g_new0 (gboolean, spec->n_keys);
    for (yaml_node_pair_t *pair = item->data.mapping.pairs.start;
         pair < item->data.mapping.pairs.top; pair++) {
      yaml_node_t *kn = yaml_document_get_node (loader->doc, pair->key);
      yaml_node_t *vn = yaml_document_get_node (loader->doc, pair->value);
      const ConfigKey *ik = NULL;
      gsize ki = 0;
      if (kn == NULL || vn == NULL)
        continue;
      if (kn->type != YAML_SCALAR_NODE) {
        g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_SYNTAX,
                     "%s:%u: expected a key name, got %s", loader->name, node_line (kn),
                     node_kind (kn));
        return FALSE;
      }
      const char *name = (const char *) kn->data.scalar.value;
      g_autofree char *full = g_strdup_printf ("%s.%s", where, name);
      for (ki = 0; ki < spec->n_keys; ki++)
        if (g_str_equal (spec->keys[ki].key, name)) {
          ik = &spec->keys[ki];
          break;
        }
      if (ik == NULL) {
        g_autofree char *hint = closest_item_key (spec, name);
        g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_UNKNOWN_KEY,
                     "%s:%u: %s: unknown key%s%s%s", loader->name, node_line (kn), full,
                     hint ? " (did you mean \"" : "", hint ? hint : "", hint ? "\"?)" : "");
        return FALSE;
      }
      if (seen[ki]) {
        g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_SYNTAX,
                     "%s:%u: %s: duplicate key", loader->name, node_line (kn), full);
        return FALSE;
      }
      seen[ki] = TRUE;
      if (ik->type == KEY_ENV) {
        if (!load_environment (loader, vn, full, (char ***) ((guint8 *) fields + ik->offset),
                               error))
          return FALSE;
        continue;
      }
      if (vn->type != YAML_SCALAR_NODE) {
        g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                     "%s:%u: %s: expected a single value, got %s", loader->name, node_line (vn),
                     full, node_kind (vn));
        return FALSE;
      }
      const char *text;
      g_autoptr (GError) value_error = NULL;
      if (!scalar_text (loader, vn, full, &text, error))
        return FALSE;
      if (text == NULL) {
        seen[ki] = ik->default_value != NULL; /* a required key stays missing */
        continue;
      }
      if (!config_set_value (fields, ik, text, loader->base_dir, &value_error)) {
        g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID, "%s:%u: %s: %s",
                     loader->name, node_line (vn), full, value_error->message);
        return FALSE;
      }
    }
    for (gsize ki = 0; ki < spec->n_keys; ki++) {
      if (spec->keys[ki].default_value == NULL && !seen[ki]) {
        g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                     "%s:%u: %s: %s is required", loader->name, node_line (item), where,
                     spec->keys[ki].key);
        return FALSE;
      }
      if (spec->unique && g_str_equal (spec->keys[ki].key, spec->unique)) {
        const char *v = *(char **) ((guint8 *) fields + spec->keys[ki].offset);
        if (!g_hash_table_add (unique, g_strdup (v))) {
          g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                       "%s:%u: %s: %s \"%s\" appears twice", loader->name, node_line (item),
                       where, spec->unique, v);
          return FALSE;
        }
      }
    }
  }
  return TRUE;
}

static gboolean
load_mapping (Loader *loader, yaml_node_t *mapping, const char *prefix, GError **error)
{
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);

  for (yaml_node_pair_t *pair = mapping->data.mapping.pairs.start;
       pair < mapping->data.mapping.pairs.top; pair++) {
    yaml_node_t *key_node = yaml_document_get_node (loader->doc, pair->key);
    yaml_node_t *value = yaml_document_get_node (loader->doc, pair->value);
    g_autofree char *key = NULL;
    const ConfigKey *k;

    if (key_node == NULL || value == NULL)
      continue;
    if (key_node->type != YAML_SCALAR_NODE) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_SYNTAX,
                   "%s:%u: expected a key name, got %s", loader->name, node_line (key_node),
                   node_kind (key_node));
      return FALSE;
    }
    const char *name = (const char *) key_node->data.scalar.value;
    key = prefix[0] ? g_strconcat (prefix, ".", name, NULL) : g_strdup (name);

    if (g_hash_table_contains (seen, name)) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_SYNTAX,
                   "%s:%u: %s: duplicate key", loader->name, node_line (key_node), key);
      return FALSE;
    }
    g_hash_table_add (seen, (gpointer) name);

    k = config_key_lookup (key);
    if (k != NULL && k->type == KEY_LIST) {
      if (!load_list (loader, k, value, key, error))
        return FALSE;
    } else if (k != NULL) {
      g_autoptr (GError) value_error = NULL;
      if (value->type != YAML_SCALAR_NODE) {
        g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                     "%s:%u: %s: expected a single value, got %s", loader->name,
                     node_line (value), key, node_kind (value));
        return FALSE;
      }
      const char *text = (const char *) value->data.scalar.value;
      if (strlen (text) != value->data.scalar.length) {
        g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                     "%s:%u: %s: the value contains a NUL character", loader->name,
                     node_line (value), key);
        return FALSE;
      }
      /* A plain "~" or "null" means "leave the default". */
      if (value->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
          (g_str_equal (text, "~") || g_str_equal (text, "null") || text[0] == '\0'))
        continue;
      if (!config_set_value (loader->config, k, text, loader->base_dir, &value_error)) {
        g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID, "%s:%u: %s: %s",
                     loader->name, node_line (value), key, value_error->message);
        return FALSE;
      }
    } else if (config_is_section (key)) {
      if (value->type == YAML_SCALAR_NODE && value->data.scalar.length == 0)
        continue; /* "tls:" with nothing under it */
      if (value->type != YAML_MAPPING_NODE) {
        g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                     "%s:%u: %s: expected a mapping of settings, got %s", loader->name,
                     node_line (value), key, node_kind (value));
        return FALSE;
      }
      if (!load_mapping (loader, value, key, error))
        return FALSE;
    } else {
      g_autofree char *hint = closest_key (key);
      g_autofree char *suffix =
          hint ? g_strdup_printf (" (did you mean \"%s\"?)", hint) : g_strdup ("");
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_UNKNOWN_KEY,
                   "%s:%u: %s: unknown key%s", loader->name, node_line (key_node), key, suffix);
      return FALSE;
    }
  }
  return TRUE;
}

static gboolean
auth_modes_valid (const char *modes, const char *key, const char *name, GError **error)
{
  static const char *const known[] = { "none", "api_key", "jwt", "sigv4", "session", "authorizer",
                                       NULL };
  g_auto (GStrv) parts = g_strsplit (modes, ",", 16);
  guint n = 0;
  for (guint i = 0; parts[i]; i++) {
    const char *mode = g_strstrip (parts[i]);
    if (mode[0] == '\0')
      continue;
    n++;
    if (!g_strv_contains (known, mode)) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: %s: unknown mode '%s' (none, api_key, jwt, sigv4, session, authorizer)",
                   name, key, mode);
      return FALSE;
    }
  }
  if (n == 0) {
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                 "%s: %s: name at least one mode", name, key);
    return FALSE;
  }
  return TRUE;
}

gboolean
edge_config_validate (const EdgeConfig *config, const char *name, GError **error)
{
  if (config->data_dir[0] == '\0') {
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                 "%s: data_dir: must not be empty", name);
    return FALSE;
  }
  if ((config->gateway_tls_cert[0] == '\0') != (config->gateway_tls_key[0] == '\0')) {
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                 "%s: gateway.tls: cert and key must be given together", name);
    return FALSE;
  }
  if (!auth_modes_valid (config->gateway_auth_modes, "gateway.auth.modes", name, error))
    return FALSE;
  for (guint i = 0; i < config->auth_groups->len; i++) {
    const EdgeConfigAuthGroup *g = config->auth_groups->pdata[i];
    gboolean found = g->usage_plan[0] == '\0';
    if (!auth_modes_valid (g->modes, "gateway.auth.groups: modes", name, error))
      return FALSE;
    for (guint k = 0; k < config->usage_plans->len && !found; k++)
      found = g_str_equal (((EdgeConfigUsagePlan *) config->usage_plans->pdata[k])->name,
                           g->usage_plan);
    if (!found) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: gateway.auth.groups: usage_plan %s is not in gateway.auth.usage_plans",
                   name, g->usage_plan);
      return FALSE;
    }
    if (strstr (g->modes, "authorizer") && config->gateway_auth_authorizer_function[0] == '\0') {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: gateway.auth.groups: mode authorizer needs "
                   "gateway.auth.authorizer.function",
                   name);
      return FALSE;
    }
  }
  /* Triggers name functions of the same file. */
  g_autoptr (GHashTable) functions = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < config->functions->len; i++)
    g_hash_table_add (functions, ((EdgeConfigFunction *) config->functions->pdata[i])->name);
  for (guint i = 0; i < config->schedules->len; i++) {
    const EdgeConfigSchedule *s = config->schedules->pdata[i];
    if (!g_hash_table_contains (functions, s->function)) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: schedules[%u] (%s): no function \"%s\" in functions", name, i, s->name,
                   s->function);
      return FALSE;
    }
  }
  for (guint i = 0; i < config->mappings->len; i++) {
    const EdgeConfigMapping *m = config->mappings->pdata[i];
    if (!g_hash_table_contains (functions, m->function)) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: event_source_mappings[%u] (%s): no function \"%s\" in functions", name,
                   i, m->stream, m->function);
      return FALSE;
    }
  }
  for (guint i = 0; i < config->websockets->len; i++) {
    const EdgeConfigWebSocket *w = config->websockets->pdata[i];
    const char *named[] = { w->connect, w->disconnect, w->message };
    for (gsize j = 0; j < G_N_ELEMENTS (named); j++)
      if (named[j][0] && !g_hash_table_contains (functions, named[j])) {
        g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                     "%s: websockets[%u] (%s): no function \"%s\" in functions", name, i,
                     w->path, named[j]);
        return FALSE;
      }
  }
  for (guint i = 0; i < config->websocket_routes->len; i++) {
    const EdgeConfigWebSocketRoute *w = config->websocket_routes->pdata[i];
    if (!g_hash_table_contains (functions, w->function)) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: websocket_routes[%u] (%s %s): no function \"%s\" in functions", name, i,
                   w->path, w->action, w->function);
      return FALSE;
    }
  }
  g_autoptr (GHashTable) brokers = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < config->mqtt_brokers->len; i++)
    g_hash_table_add (brokers, ((EdgeConfigMqttBroker *) config->mqtt_brokers->pdata[i])->name);
  for (guint i = 0; i < config->mqtt_subscriptions->len; i++) {
    const EdgeConfigMqttSubscription *m = config->mqtt_subscriptions->pdata[i];
    if (!g_hash_table_contains (brokers, m->broker)) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: mqtt.subscriptions[%u] (%s): no broker \"%s\" in mqtt.brokers", name, i,
                   m->topic, m->broker);
      return FALSE;
    }
  }
  for (guint i = 0; i < config->mqtt_rules->len; i++) {
    const EdgeConfigMqttRule *r = config->mqtt_rules->pdata[i];
    if (!g_hash_table_contains (brokers, r->broker)) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: mqtt.rules[%u] (%s): no broker \"%s\" in mqtt.brokers", name, i, r->name,
                   r->broker);
      return FALSE;
    }
    if (r->function[0] && !g_hash_table_contains (functions, r->function)) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: mqtt.rules[%u] (%s): no function \"%s\" in functions", name, i, r->name,
                   r->function);
      return FALSE;
    }
    if (!r->stream[0] && !r->function[0] && !r->republish[0]) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: mqtt.rules[%u] (%s): no action (stream, function or republish)", name, i,
                   r->name);
      return FALSE;
    }
  }
  for (guint i = 0; i < config->mqtt_publish->len; i++) {
    const EdgeConfigMqttPublish *m = config->mqtt_publish->pdata[i];
    if (!g_hash_table_contains (brokers, m->broker)) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: mqtt.publish[%u] (%s): no broker \"%s\" in mqtt.brokers", name, i,
                   m->stream, m->broker);
      return FALSE;
    }
  }
  if (config->mqtt_demo_broker[0] && !g_hash_table_contains (brokers, config->mqtt_demo_broker)) {
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                 "%s: mqtt.demo.broker: no broker \"%s\" in mqtt.brokers", name,
                 config->mqtt_demo_broker);
    return FALSE;
  }
  for (guint i = 0; i < config->routes->len; i++) {
    const EdgeConfigRoute *r = config->routes->pdata[i];
    if (!g_hash_table_contains (functions, r->function)) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: routes[%u] (%s): no function \"%s\" in functions", name, i, r->route,
                   r->function);
      return FALSE;
    }
  }
  return TRUE;
}

EdgeConfig *
edge_config_load_data (const char *data, gsize len, const char *name, const char *base_dir,
                       GError **error)
{
  yaml_parser_t parser;
  yaml_document_t doc;
  g_autoptr (EdgeConfig) config = NULL;
  gboolean ok = TRUE;

  g_return_val_if_fail (data != NULL || len == 0, NULL);
  if (len > EDGE_CONFIG_MAX_FILE_BYTES) {
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_SYNTAX,
                 "%s: larger than %u bytes", name, EDGE_CONFIG_MAX_FILE_BYTES);
    return NULL;
  }
  if (!g_utf8_validate (data, len, NULL) || memchr (data, '\0', len) != NULL) {
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_SYNTAX,
                 "%s: not UTF-8 text", name);
    return NULL;
  }

  if (!yaml_parser_initialize (&parser))
    g_error ("out of memory");
  yaml_parser_set_input_string (&parser, (const unsigned char *) data, len);
  if (!yaml_parser_load (&parser, &doc)) {
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_SYNTAX, "%s:%zu: %s", name,
                 parser.problem_mark.line + 1, parser.problem ? parser.problem : "invalid YAML");
    yaml_parser_delete (&parser);
    return NULL;
  }

  config = edge_config_new_default ();
  yaml_node_t *root = yaml_document_get_root_node (&doc);
  if (root == NULL) {
    /* An empty file: all defaults. */
  } else if (root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0) {
    /* Only comments. */
  } else if (root->type != YAML_MAPPING_NODE) {
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_SYNTAX,
                 "%s:%u: expected a mapping of settings at the top, got %s", name,
                 node_line (root), node_kind (root));
    ok = FALSE;
  } else {
    Loader loader = { &doc, name, base_dir, config };
    ok = load_mapping (&loader, root, "", error);
  }

  /* A second document in the same file is a mistake worth naming. */
  if (ok) {
    yaml_document_t extra;
    if (yaml_parser_load (&parser, &extra)) {
      if (yaml_document_get_root_node (&extra) != NULL) {
        g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_SYNTAX,
                     "%s:%zu: only one YAML document is allowed", name,
                     extra.start_mark.line + 1);
        ok = FALSE;
      }
      yaml_document_delete (&extra);
    } else {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_SYNTAX, "%s:%zu: %s", name,
                   parser.problem_mark.line + 1, parser.problem ? parser.problem : "invalid YAML");
      ok = FALSE;
    }
  }

  yaml_document_delete (&doc);
  yaml_parser_delete (&parser);
  if (!ok)
    return NULL;
  /* Relative defaults are relative to the file too, like relative values. */
  for (gsize i = 0; i < G_N_ELEMENTS (config_keys) && base_dir; i++) {
    char **slot = (char **) ((guint8 *) config + config_keys[i].offset);
    if (config_keys[i].type == KEY_PATH && (*slot)[0] != '\0' && !g_path_is_absolute (*slot)) {
      char *absolute = g_build_filename (base_dir, *slot, NULL);
      g_free (*slot);
      *slot = absolute;
    }
  }
  if (!edge_config_validate (config, name, error))
    return NULL;
  return g_steal_pointer (&config);
}

EdgeConfig *
edge_config_load_file (const char *path, GError **error)
{
  g_autofree char *contents = NULL;
  g_autofree char *dir = NULL;
  g_autofree char *abs_dir = NULL;
  g_autoptr (GError) io_error = NULL;
  gsize len = 0;
  g_autoptr (GMappedFile) mapped = NULL;

  mapped = g_mapped_file_new (path, FALSE, &io_error);
  if (mapped == NULL) {
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_IO, "%s", io_error->message);
    return NULL;
  }
  len = g_mapped_file_get_length (mapped);
  if (len > EDGE_CONFIG_MAX_FILE_BYTES) {
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_IO, "%s: larger than %u bytes", path,
                 EDGE_CONFIG_MAX_FILE_BYTES);
    return NULL;
  }
  contents = g_strndup (g_mapped_file_get_contents (mapped), len);
  dir = g_path_get_dirname (path);
  abs_dir = g_canonicalize_filename (dir, NULL);
  return edge_config_load_data (contents, len, path, abs_dir, error);
}

gboolean
edge_config_set (EdgeConfig *config, const char *key, const char *value, GError **error)
{
  const ConfigKey *k = config_key_lookup (key);
  g_autoptr (GError) value_error = NULL;

  if (k == NULL) {
    g_autofree char *hint = closest_key (key);
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_UNKNOWN_KEY, "%s: unknown key%s%s%s",
                 key, hint ? " (did you mean \"" : "", hint ? hint : "", hint ? "\"?)" : "");
    return FALSE;
  }
  if (k->type == KEY_LIST) {
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                 "%s: a list is written in the configuration file, not set on its own", key);
    return FALSE;
  }
  if (!config_set_value (config, k, value, NULL, &value_error)) {
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID, "%s: %s", key,
                 value_error->message);
    return FALSE;
  }
  return TRUE;
}

char *
edge_config_master_key_path (const EdgeConfig *config)
{
  if (config->keys_master_key_file[0] != '\0')
    return g_strdup (config->keys_master_key_file);
  return g_build_filename (config->data_dir, "master.key", NULL);
}

/* --- writing the tables back out --- */

static char *
format_value (const void *base, const ConfigKey *k)
{
  const guint8 *field = (const guint8 *) base + k->offset;
  switch (k->type) {
  case KEY_STRING:
  case KEY_PATH:
  case KEY_LISTEN:
  case KEY_ENUM:
    return g_strdup (*(char *const *) field);
  case KEY_BOOL:
    return g_strdup (*(const gboolean *) field ? "true" : "false");
  case KEY_INT:
    return g_strdup_printf ("%" G_GINT64_FORMAT, *(const gint64 *) field);
  case KEY_SIZE:
    return format_size (*(const gint64 *) field);
  case KEY_DURATION: {
    gint64 v = *(const gint64 *) field;
    if (v == 0)
      return g_strdup ("0s");
    if (v % 3600000 == 0)
      return g_strdup_printf ("%" G_GINT64_FORMAT "h", v / 3600000);
    if (v % 60000 == 0)
      return g_strdup_printf ("%" G_GINT64_FORMAT "m", v / 60000);
    if (v % 1000 == 0)
      return g_strdup_printf ("%" G_GINT64_FORMAT "s", v / 1000);
    return g_strdup_printf ("%" G_GINT64_FORMAT "ms", v);
  }
  case KEY_LIST:
  case KEY_ENV:
    return g_strdup ("");
  }
  g_assert_not_reached ();
}

/* Double-quoted YAML scalar, so that any string survives the round trip:
 * quotes and backslashes escaped, and so is every character YAML does not
 * allow raw in a scalar (controls, line separators, the BOM). */
static void
append_yaml_string (GString *out, const char *value)
{
  g_string_append_c (out, '"');
  for (const char *p = value; *p; p = g_utf8_next_char (p)) {
    gunichar c = g_utf8_get_char (p);
    if (c == '"' || c == '\\') {
      g_string_append_c (out, '\\');
      g_string_append_c (out, (char) c);
    } else if (c < 0x20 || c == 0x7f || c == 0x85 || c == 0x2028 || c == 0x2029 || c == 0xfeff ||
               (c >= 0x80 && !g_unichar_isprint (c))) {
      if (c > 0xffff)
        g_string_append_printf (out, "\\U%08x", c);
      else
        g_string_append_printf (out, "\\u%04x", c);
    } else {
      g_string_append_unichar (out, c);
    }
  }
  g_string_append_c (out, '"');
}

static void
append_scalar (GString *out, const ConfigKey *k, const char *value)
{
  if (k->type == KEY_BOOL || k->type == KEY_INT)
    g_string_append (out, value);
  else
    append_yaml_string (out, value);
}

static void
append_wrapped_comment (GString *out, const char *indent, const char *text)
{
  g_auto (GStrv) words = g_strsplit (text, " ", -1);
  gsize column = 0;
  for (gsize i = 0; words[i]; i++) {
    if (column == 0) {
      g_string_append_printf (out, "%s#", indent);
      column = strlen (indent) + 1;
    }
    g_string_append_printf (out, " %s", words[i]);
    column += strlen (words[i]) + 1;
    if (column > 88 || words[i + 1] == NULL) {
      g_string_append_c (out, '\n');
      column = 0;
    }
  }
}

char *
edge_config_to_yaml (const EdgeConfig *config)
{
  GString *out = g_string_new ("# edged configuration. Every key, with its description; see\n"
                               "# README.md for the reference table.\n");
  g_auto (GStrv) open_sections = g_new0 (char *, 1);
  guint open_depth = 0;

  for (gsize i = 0; i < G_N_ELEMENTS (config_keys); i++) {
    const ConfigKey *k = &config_keys[i];
    g_auto (GStrv) parts = g_strsplit (k->key, ".", -1);
    guint depth = g_strv_length (parts) - 1;
    guint common = 0;

    /* Keep the sections already open that this key shares. */
    while (common < depth && common < open_depth && g_str_equal (parts[common], open_sections[common]))
      common++;
    g_strfreev (open_sections);
    open_sections = g_new0 (char *, depth + 1);
    for (guint d = 0; d < depth; d++)
      open_sections[d] = g_strdup (parts[d]);
    if (common < depth || (i > 0 && depth == 0))
      g_string_append_c (out, '\n');
    for (guint d = common; d < depth; d++)
      g_string_append_printf (out, "%*s%s:\n", (int) (2 * d), "", parts[d]);
    open_depth = depth;

    g_autofree char *indent = g_strnfill (2 * depth, ' ');
    append_wrapped_comment (out, indent, k->description);
    g_string_append_printf (out, "%s%s:", indent, parts[depth]);
    if (k->type == KEY_LIST) {
      GPtrArray *items = *(GPtrArray *const *) ((const guint8 *) config + k->offset);
      if (items->len == 0)
        g_string_append (out, " []");
      g_string_append_c (out, '\n');
      for (guint j = 0; j < items->len; j++) {
        for (gsize ki = 0; ki < k->list->n_keys; ki++) {
          const ConfigKey *ik = &k->list->keys[ki];
          const void *item = g_ptr_array_index (items, j);
          if (ik->type == KEY_ENV) {
            char *const *vars = *(char *const *const *) ((const guint8 *) item + ik->offset);
            g_string_append_printf (out, "%s%s%s:%s\n", indent, ki == 0 ? "  - " : "    ",
                                    ik->key, vars[0] ? "" : " {}");
            for (guint v = 0; vars[v]; v++) {
              const char *eq = strchr (vars[v], '=');
              g_string_append_printf (out, "%s      %.*s: ", indent, (int) (eq - vars[v]),
                                      vars[v]);
              append_yaml_string (out, eq + 1);
              g_string_append_c (out, '\n');
            }
            continue;
          }
          g_autofree char *value = format_value (item, ik);
          g_string_append_printf (out, "%s%s%s: ", indent, ki == 0 ? "  - " : "    ", ik->key);
          append_scalar (out, ik, value);
          g_string_append_c (out, '\n');
        }
      }
      continue;
    }
    g_autofree char *value = format_value (config, k);
    g_string_append_c (out, ' ');
    append_scalar (out, k, value);
    g_string_append_c (out, '\n');
  }
  return g_string_free (out, FALSE);
}

static const char *
type_name (const ConfigKey *k)
{
  switch (k->type) {
  case KEY_STRING:
    return "string";
  case KEY_PATH:
    return "path";
  case KEY_LISTEN:
    return "HOST:PORT";
  case KEY_ENUM:
    return "enum";
  case KEY_BOOL:
    return "bool";
  case KEY_INT:
    return "integer";
  case KEY_SIZE:
    return "size";
  case KEY_DURATION:
    return "duration";
  case KEY_LIST:
    return "list";
  case KEY_ENV:
    return "mapping";
  }
  g_assert_not_reached ();
}

static void
append_reference_row (GString *out, const char *name, const ConfigKey *k, const void *defaults)
{
  g_autofree char *value = NULL;
  g_autofree char *limits = NULL;

  if (k->type == KEY_LIST)
    value = g_strdup ("[]");
  else if (k->default_value == NULL)
    value = NULL;
  else
    value = format_value (defaults, k);
  if (k->type == KEY_INT || k->type == KEY_SIZE || k->type == KEY_DURATION) {
    g_autofree guint8 *bounds = g_malloc0 (MAX (sizeof (EdgeConfig), sizeof (EdgeConfigStream)));
    gint64 *slot = (gint64 *) (bounds + k->offset);
    *slot = k->min;
    g_autofree char *lo = format_value (bounds, k);
    *slot = k->max;
    g_autofree char *hi = format_value (bounds, k);
    limits = g_strdup_printf ("%s – %s", lo, hi);
  } else if (k->type == KEY_ENUM) {
    limits = g_strjoinv (", ", (char **) k->choices);
  } else {
    limits = g_strdup ("");
  }
  g_string_append_printf (out, "| `%s` | %s | %s%s%s | %s | %s |\n", name, type_name (k),
                          value && value[0] ? "`" : "",
                          value == NULL ? "(required)" : value[0] ? value : "(unset)",
                          value && value[0] ? "`" : "", limits, k->description);
}

char *
edge_config_reference_markdown (void)
{
  GString *out = g_string_new ("| key | type | default | limits | description |\n"
                               "|---|---|---|---|---|\n");
  g_autoptr (EdgeConfig) defaults = edge_config_new_default ();

  for (gsize i = 0; i < G_N_ELEMENTS (config_keys); i++) {
    const ConfigKey *k = &config_keys[i];
    append_reference_row (out, k->key, k, defaults);
    if (k->type != KEY_LIST)
      continue;
    void *item = g_malloc0 (k->list->item_size);
    fields_init (item, k->list->keys, k->list->n_keys);
    for (gsize ki = 0; ki < k->list->n_keys; ki++) {
      g_autofree char *name = g_strdup_printf ("%s[].%s", k->key, k->list->keys[ki].key);
      append_reference_row (out, name, &k->list->keys[ki], item);
    }
    fields_free (item, k->list->keys, k->list->n_keys);
    g_free (item);
  }
  return g_string_free (out, FALSE);
}
