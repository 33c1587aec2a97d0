/* edge-core.h: the bottom layer of edged.
 *
 * Configuration tables and YAML loading, the data directory and its lock, the
 * state database, master keys and AES-256-GCM frames, logging and the metrics
 * registry. Nothing here knows about any module above it.
 *
 * Errors: functions that can fail return gboolean (or a pointer, NULL on
 * failure) and fill a GError in one of the domains below; out parameters named
 * ret_* are left untouched on failure. Library code here never logs.
 */
#pragma once

#include <glib.h>
#include <glib-unix.h>
#include <sqlite3.h>

G_BEGIN_DECLS

/* ------------------------------------------------------------------------ */
/* Big-endian integers in byte buffers (on-disk and on-wire formats)        */
/* ------------------------------------------------------------------------ */

static inline guint16
edge_get_be16 (const guint8 *p)
{
  return (guint16) (p[0] << 8 | p[1]);
}

static inline void
edge_put_be32 (guint8 *p, guint32 v)
{
  p[0] = (guint8) (v >> 24);
  p[1] = (guint8) (v >> 16);
  p[2] = (guint8) (v >> 8);
  p[3] = (guint8) v;
}

static inline guint32
edge_get_be32 (const guint8 *p)
{
  return (guint32) p[0] << 24 | (guint32) p[1] << 16 | (guint32) p[2] << 8 | p[3];
}

static inline void
edge_put_be64 (guint8 *p, guint64 v)
{
  edge_put_be32 (p, (guint32) (v >> 32));
  edge_put_be32 (p + 4, (guint32) v);
}

static inline guint64
edge_get_be64 (const guint8 *p)
{
  return (guint64) edge_get_be32 (p) << 32 | edge_get_be32 (p + 4);
}

/* ------------------------------------------------------------------------ */
/* Identifiers                                                              */
/* ------------------------------------------------------------------------ */

/* A random (version 4) UUID, "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx", as
 * g_uuid_string_random makes one but without printf: request ids are made
 * at the rate of requests. */
char *edge_uuid_random (void);

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

#define EDGE_CONFIG_ERROR (edge_config_error_quark ())
GQuark edge_config_error_quark (void);

typedef enum {
  EDGE_CONFIG_ERROR_IO,          /* the file could not be read */
  EDGE_CONFIG_ERROR_SYNTAX,      /* not YAML, or not a mapping at the top */
  EDGE_CONFIG_ERROR_UNKNOWN_KEY, /* a key no table declares */
  EDGE_CONFIG_ERROR_INVALID,     /* a value of the wrong type or out of range */
} EdgeConfigError;

/* Largest configuration file edged reads. */
#define EDGE_CONFIG_MAX_FILE_BYTES (1024 * 1024)

/* One stream declared in the configuration (the "streams" list). */
typedef struct {
  char *name;
  gint64 shards;
  char *durability; /* "sync", "batch" or "none" */
  gint64 batch_ms;
  gint64 retention_hours;
  gint64 max_record_bytes;
  gint64 retention_bytes;          /* per shard; 0: no limit */
  gint64 write_records_per_second; /* per shard; 0: no limit */
  gint64 write_bytes_per_second;   /* per shard; 0: no limit */
} EdgeConfigStream;

/* One camera declared in the configuration (the "cameras" list). */
typedef struct {
  char *name;
  char *source;            /* test://, file://, rtsp://, v4l2://, libcamera:// */
  char *rtsp_transport;    /* "tcp" or "udp" */
  gint64 fragment_ms;      /* target fragment duration */
  gint64 retention_hours;
  gint64 retention_bytes;  /* 0: no size limit */
  gint64 bitrate_kbps;     /* raw sources: encoder bitrate */
  gint64 keyframe_ms;      /* raw sources: keyframe interval */
  gint64 width, height, fps; /* raw sources; 0: the source's own */
  /* Detection (media/detect.c): */
  char *detect;            /* detector names, comma-separated; "" for none */
  gint64 detect_fps;
  gint64 detect_width;
  gint64 motion_sensitivity; /* 1 to 100 */
  char *motion_min_area;   /* "0.5%" or "0.005" */
  char *zones;             /* "include|exclude X,Y X,Y X,Y; ..." */
  gint64 event_cooldown_ms;
  gint64 event_pre_roll_ms;
  gint64 event_post_roll_ms;
  gint64 event_retention_hours;
  char *events_stream;
} EdgeConfigCamera;

/* One function declared in the configuration (the "functions" list). */
typedef struct {
  char *name;
  char *bootstrap;     /* the executable that speaks the Runtime API */
  char *handler;       /* _HANDLER, for runtime interface clients; may be "" */
  char **environment;  /* "NAME=value", NULL-terminated; never NULL */
  gint64 timeout_ms;
  gint64 memory_mb;
  gint64 concurrency;  /* environments at most */
  gint64 idle_ms;      /* an environment idle this long stops */
  gint64 max_processes; /* processes and threads per environment (where cgroups allow) */
  /* Asynchronous invocations (Event): */
  gint64 max_retry_attempts;
  gint64 max_event_age_ms;
  gint64 retry_delay_ms; /* before the first retry; doubled for each next one */
  char *on_success;      /* stream the invocation record goes to; "" for none */
  char *on_failure;
} EdgeConfigFunction;

/* One schedule (the "schedules" list): a function invoked at times. */
typedef struct {
  char *name;
  char *function;
  char *expression; /* rate(...) or cron(...), EventBridge's syntax */
  char *input;      /* JSON sent instead of the Scheduled Event; "" for the event */
} EdgeConfigSchedule;

/* One event source mapping (the "event_source_mappings" list): a
 * function invoked with a data stream's records. */
typedef struct {
  char *stream;
  char *function;
  gint64 batch_size;
  gint64 batching_window_ms;
  char *starting_position;  /* "TRIM_HORIZON" or "LATEST" */
  gint64 max_retry_attempts; /* -1: until the records expire */
  gint64 max_record_age_ms;  /* 0: no limit */
  gboolean bisect_on_error;
  gboolean report_batch_item_failures;
  char *on_failure;          /* stream; "" for none */
} EdgeConfigMapping;

/* One WebSocket API (the "websockets" list): connections on a gateway
 * path, their events sent to functions. */
typedef struct {
  char *path;
  char *connect;    /* $connect function; "" for none (everyone is let in) */
  char *disconnect; /* $disconnect function; "" for none */
  char *message;    /* $default function: each message */
} EdgeConfigWebSocket;

/* One custom route of a WebSocket API (the "websocket_routes" list): the
 * messages whose "action" is @action go to @function. */
typedef struct {
  char *path;
  char *action;
  char *function;
} EdgeConfigWebSocketRoute;

/* One HTTP API route (the "routes" list): requests to a function. */
typedef struct {
  char *route;    /* "METHOD /path/{param}", METHOD may be ANY */
  char *function;
  gint64 timeout_ms;
} EdgeConfigRoute;

/* One MQTT broker edged connects to (the "mqtt.brokers" list). */
typedef struct {
  char *name;
  char *host;
  gint64 port;
  char *client_id;     /* "" for edged-HOSTNAME-NAME */
  char *username;      /* "" for none */
  char *password;
  char *tls_ca_file;   /* set: the connection is TLS, the broker checked against it */
  char *tls_cert_file; /* client certificate, with tls_key_file */
  char *tls_key_file;
  gint64 keepalive_ms;
  gboolean clean_session;
  gint64 reconnect_max_ms; /* the longest wait between reconnects */
} EdgeConfigMqttBroker;

/* One subscription (the "mqtt.subscriptions" list): a topic filter's
 * messages into a data stream. */
typedef struct {
  char *broker;
  char *topic;         /* filter, with + and # */
  char *stream;
  char *partition_key; /* template: ${topic(2)}, ${device.id}, ${clientid()} */
  gint64 qos;
} EdgeConfigMqttSubscription;

/* One topic rule (the "mqtt.rules" list) and its actions. */
typedef struct {
  char *name;
  char *broker;
  char *sql;
  char *stream;        /* put what the rule selected there; "" for none */
  char *partition_key; /* template, for stream */
  char *function;      /* invoke asynchronously with it; "" for none */
  char *republish;     /* topic template to publish it to; "" for none */
  gint64 republish_qos;
} EdgeConfigMqttRule;

/* A data stream's records published to MQTT (the "mqtt.publish" list):
 * detection events, function results, anything a stream carries. */
typedef struct {
  char *stream;
  char *broker;
  char *topic;         /* template over each record (its data as the payload) */
  gint64 qos;
  gboolean retain;
} EdgeConfigMqttPublish;

/* A GPIO input line (the "gpio.inputs" list): its edges become records. */
typedef struct {
  char *name;
  char *chip;       /* gpiochip0, /dev/gpiochip0, a label, or replay:FILE */
  char *line;       /* offset or line name */
  char *edges;      /* both, rising, falling */
  gboolean active_low;
  char *bias;       /* as-is, pull-up, pull-down, disabled */
  gint64 debounce_ms;
  char *stream;
} EdgeConfigGpioInput;

/* A GPIO output line (the "gpio.outputs" list): set through the API. */
typedef struct {
  char *name;
  char *chip;
  char *line;
  gboolean active_low;
  gint64 initial;
  char *stream;     /* each change is recorded there; "" for none */
} EdgeConfigGpioOutput;

/* A delivery stream (the "delivery_streams" list): a data stream's records
 * buffered, compressed and delivered to a destination (Firehose). */
typedef struct {
  char *name;
  char *stream;           /* the data stream read */
  char *destination;      /* directory, s3, http */
  char *directory;        /* directory */
  char *endpoint;         /* s3: http(s)://host[:port] */
  char *bucket;
  char *region;
  char *access_key_id;
  char *secret_access_key;
  char *url;              /* http: the endpoint */
  char *access_key;       /* http: X-Amz-Firehose-Access-Key */
  char *servers;          /* nats: nats://host:port[,...] */
  char *subject;          /* nats: {name} and {stream} replaced */
  char *jetstream_stream; /* nats: made if missing; "" to publish only */
  gint64 replicas;
  char *tls_ca_file;      /* nats */
  char *tls_cert_file;
  char *tls_key_file;
  char *credentials_file;
  char *prefix;
  char *error_prefix;
  char *error_directory;  /* "" for DATA_DIR/delivery-errors/NAME */
  gint64 buffer_bytes;
  gint64 buffer_interval_ms;
  char *compression;      /* none, gzip */
  gint64 retry_duration_ms;
  char *starting_position; /* TRIM_HORIZON, LATEST */
  char *transform;        /* a function records go through first; "" for none */
} EdgeConfigDelivery;

/* The names of things in the configuration and the API (cameras, delivery
 * streams, forwarders, analytics applications, uploads): 1 to @max of
 * a-z A-Z 0-9 _ . - and neither "." nor "..", so that they are safe in
 * file names and URL paths. */
gboolean edge_name_valid (const char *name, gsize max);

/* A forwarder (the "forwarders" list): a data stream mirrored upstream,
 * at least once and in order per partition key. */
typedef struct {
  char *name;
  char *stream;            /* the data stream read */
  char *destination;       /* kinesis, nats */
  char *endpoint;          /* kinesis: http(s)://host[:port] */
  char *target_stream;     /* kinesis: the stream written there; "" for the same name */
  char *region;
  char *access_key_id;
  char *secret_access_key;
  char *servers;           /* nats: nats://host:port[,...] */
  char *subject;           /* nats: with {source} and {stream} replaced */
  char *jetstream_stream;  /* nats: made if missing; "" to publish only */
  gint64 replicas;
  char *tls_ca_file;       /* nats: "" for the system's */
  char *tls_cert_file;     /* nats: a client certificate, with tls_key_file */
  char *tls_key_file;
  char *credentials_file;  /* nats: a .creds file (JWT and seed) */
  char *source;            /* this box's name upstream; "" for the host name */
  gint64 batch_records;
  gboolean ordered;        /* per partition key */
  char *starting_position; /* TRIM_HORIZON, LATEST */
} EdgeConfigForwarder;

/* An analytics application (the "analytics" list): SQL evaluated by
 * SQLite over the windows of a data stream's JSON records, results written
 * to another data stream. */
typedef struct {
  char *name;
  char *stream;            /* the data stream read */
  char *output;            /* the data stream results go to */
  char *window;            /* tumbling, sliding, session */
  gint64 size_ms;          /* tumbling, sliding */
  gint64 slide_ms;         /* sliding: 0 for size */
  gint64 gap_ms;           /* session */
  char *time;              /* SQL: event time in Unix ms */
  char *key;               /* SQL: the session and anomaly key */
  gint64 lateness_ms;
  char *sql;
  char *anomaly_value;     /* SQL: the value scored; "" for none */
  char *anomaly_threshold; /* a number */
  gint64 anomaly_min_samples;
  char *starting_position;
} EdgeConfigAnalytics;

/* A video upload (the "video_uploads" list): a camera's fragments, init
 * segments and an HLS index copied to S3-compatible storage. */
typedef struct {
  char *name;
  char *camera;
  char *endpoint;
  char *bucket;
  char *region;
  char *access_key_id;
  char *secret_access_key;
  char *prefix;
  gint64 retention_ms;     /* of the uploaded copy; 0: kept */
} EdgeConfigVideoUpload;

/* A usage plan API keys are held to (gateway.auth.usage_plans). */
typedef struct {
  char *name;
  gint64 rate;  /* requests per second, 0: no rate limit */
  gint64 burst; /* requests at once; 0: the rate (at least 1) */
  gint64 quota_per_day;
} EdgeConfigUsagePlan;

/* Which credentials a group of routes takes (gateway.auth.groups). */
typedef struct {
  char *routes;     /* "/v1/cameras/{name}, @aws, /healthz" (and PREFIX* forms) */
  char *modes;      /* "api_key, session" */
  char *usage_plan; /* "" or a plan every API key is held to here */
} EdgeConfigAuthGroup;

/* The daemon's whole configuration, as values. Strings are owned by the
 * struct; an unset optional string is "" (never NULL). Sizes are bytes,
 * durations milliseconds. */
typedef struct {
  char *data_dir;
  char *log_level;
  char *gateway_listen;
  char *gateway_tls_cert;
  char *gateway_tls_key;
  gint64 gateway_max_body_bytes;
  gint64 gateway_max_connections;
  gboolean gateway_access_log;
  char *gateway_web_root;
  gint64 gateway_ws_max_buffered_bytes;
  gint64 gateway_ws_max_message_bytes;
  gint64 gateway_ws_stall_timeout_ms;
  gint64 gateway_max_connections_per_client;
  gint64 gateway_header_timeout_ms;
  gint64 gateway_keepalive_timeout_ms;
  char *gateway_auth_enabled; /* auto, on, off */
  char *gateway_auth_modes;
  gint64 gateway_auth_session_ttl_ms;
  char *gateway_auth_jwt_issuer;
  char *gateway_auth_jwt_audience;
  char *gateway_auth_jwt_secret_file;
  char *gateway_auth_jwt_public_key_file;
  char *gateway_auth_jwt_jwks_file;
  char *gateway_auth_jwt_admin_scope;
  gint64 gateway_auth_jwt_leeway_ms;
  char *gateway_auth_sigv4_credentials_file;
  char *gateway_auth_sigv4_region;
  gint64 gateway_auth_sigv4_replay_window_ms;
  char *gateway_auth_authorizer_function;
  char *gateway_auth_authorizer_identity;
  gint64 gateway_auth_authorizer_ttl_ms;
  GPtrArray *usage_plans; /* EdgeConfigUsagePlan *; never NULL */
  GPtrArray *auth_groups; /* EdgeConfigAuthGroup *; never NULL */
  char *gateway_cors_allow_origins;
  char *gateway_cors_allow_methods;
  char *gateway_cors_allow_headers;
  char *gateway_cors_expose_headers;
  gint64 gateway_cors_max_age_ms;
  gboolean gateway_cors_allow_credentials;
  char *keys_master_key_file;
  gint64 storage_min_free_bytes;
  gint64 storage_video_reserve_bytes;
  GPtrArray *streams; /* EdgeConfigStream *, in file order; never NULL */
  GPtrArray *cameras; /* EdgeConfigCamera *, in file order; never NULL */
  GPtrArray *functions; /* EdgeConfigFunction *, in file order; never NULL */
  GPtrArray *schedules; /* EdgeConfigSchedule *, in file order; never NULL */
  GPtrArray *routes;    /* EdgeConfigRoute *, in file order; never NULL */
  GPtrArray *mappings;  /* EdgeConfigMapping *, in file order; never NULL */
  GPtrArray *websockets; /* EdgeConfigWebSocket *, in file order; never NULL */
  GPtrArray *websocket_routes; /* EdgeConfigWebSocketRoute *, in file order; never NULL */
  GPtrArray *mqtt_brokers;       /* EdgeConfigMqttBroker *; never NULL */
  GPtrArray *mqtt_subscriptions; /* EdgeConfigMqttSubscription *; never NULL */
  GPtrArray *mqtt_rules;         /* EdgeConfigMqttRule *; never NULL */
  GPtrArray *mqtt_publish;       /* EdgeConfigMqttPublish *; never NULL */
  GPtrArray *deliveries;         /* EdgeConfigDelivery *; never NULL */
  char *delivery_s3_endpoint;    /* S3 for delivery streams made with the Firehose API */
  char *delivery_s3_region;
  char *delivery_s3_access_key_id;
  char *delivery_s3_secret_access_key;
  GPtrArray *forwarders;         /* EdgeConfigForwarder *; never NULL */
  GPtrArray *analytics;          /* EdgeConfigAnalytics *; never NULL */
  GPtrArray *video_uploads;      /* EdgeConfigVideoUpload *; never NULL */
  GPtrArray *gpio_inputs;        /* EdgeConfigGpioInput *; never NULL */
  GPtrArray *gpio_outputs;       /* EdgeConfigGpioOutput *; never NULL */
  char *mqtt_demo_broker;        /* the demo sensors publish there; "" for none */
  gint64 mqtt_demo_interval_ms;
  gboolean mqtt_home_assistant;  /* announce sensors with Home Assistant discovery */
  char *mqtt_home_assistant_prefix;
} EdgeConfig;

/* Every key at its default and empty lists: what a configuration file
 * starts from. (transfer full) */
EdgeConfig *edge_config_new_default (void);

/* What edged runs without a configuration file: the defaults plus a demo
 * camera (test://), so that a first start has something to show, and,
 * given the path of the sample function's bootstrap (nullable), that
 * function as "hello". (transfer full) */
EdgeConfig *edge_config_new_embedded (const char *sample_bootstrap);

/* Parses YAML text @data of @len bytes. @name is used in error messages
 * ("edged.yaml:14: gateway.listen: ..."); @base_dir (nullable) is where
 * relative paths are resolved, the current directory when NULL.
 * Pure: touches no file. Returns (transfer full) or NULL with @error set. */
EdgeConfig *edge_config_load_data (const char *data, gsize len, const char *name,
                                   const char *base_dir, GError **error);

/* Reads and parses the file at @path; relative paths in it are resolved
 * against the file's directory. (transfer full), or NULL with @error set. */
EdgeConfig *edge_config_load_file (const char *path, GError **error);

/* Sets one dotted @key from its YAML text form, validated as in a file
 * ("gateway.listen", "127.0.0.1:9000"); used for command-line overrides. */
gboolean edge_config_set (EdgeConfig *config, const char *key, const char *value, GError **error);

/* Checks rules that involve several keys (TLS cert and key together, ...);
 * @name prefixes the message. Loading runs it; call it again after
 * edge_config_set. */
gboolean edge_config_validate (const EdgeConfig *config, const char *name, GError **error);

/* Serialises @config as YAML with every key and its description as a
 * comment; loading the result yields an equal configuration. (transfer full) */
char *edge_config_to_yaml (const EdgeConfig *config);

/* The configuration reference as a Markdown table generated from the key
 * tables: the text README.md and docs/config.md carry. (transfer full) */
char *edge_config_reference_markdown (void);

/* Resolved path of the master key file (the configured one, or
 * DATA_DIR/master.key). (transfer full) */
char *edge_config_master_key_path (const EdgeConfig *config);

/* Splits a HOST:PORT listen address as the config validates it.
 * [v6]:port is accepted. ret_host is (transfer full). */
gboolean edge_config_parse_listen (const char *listen, char **ret_host, guint16 *ret_port,
                                   GError **error);

void edge_config_free (EdgeConfig *config);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (EdgeConfig, edge_config_free)

/* ------------------------------------------------------------------------ */
/* Logging                                                                  */
/* ------------------------------------------------------------------------ */

/* Installs the process-wide log writer: one line per message on stderr,
 * "LEVEL domain: message", with a syslog priority prefix ("<6>") instead of
 * the timestamp when stderr is connected to journald. Main thread, once. */
void edge_log_init (void);

/* Sets the lowest level written: "error", "warning", "info" or "debug".
 * Returns FALSE for an unknown name. Any thread. */
gboolean edge_log_set_level (const char *level);

/* Whether a message at @level would be written: for callers that would
 * otherwise format lines, at a rate, only for them to be dropped. */
gboolean edge_log_enabled (GLogLevelFlags level);

/* ------------------------------------------------------------------------ */
/* Watching descriptors on the main loop                                    */
/* ------------------------------------------------------------------------ */

/* A source watching @fd for @condition, not attached, that does not wake
 * the loop each time it is dispatched (loop.c). (transfer full) */
GSource *edge_fd_source_new (int fd, GIOCondition condition);
/* g_unix_fd_add_full with such a source (default priority), on the
 * thread-default context. */
guint edge_fd_watch (int fd, GIOCondition condition, GUnixFDSourceFunc func, gpointer data,
                     GDestroyNotify notify);
/* The same for a source made elsewhere (a GSocket's): call before
 * attaching it. */
void edge_source_quiet (GSource *source);
/* A source, not attached, whose callback runs once @ready_time
 * (g_get_monotonic_time's clock) has come. To wait again, the callback
 * sets a later ready time and returns G_SOURCE_CONTINUE: a deadline that
 * moves often (each chunk of a body) is better kept as a time the
 * callback checks, since GLib 2.74 wakes the loop (an eventfd write) each
 * time an attached source's ready time is changed from outside it.
 * (transfer full) */
GSource *edge_deadline_source_new (gint64 ready_time);

/* ------------------------------------------------------------------------ */
/* Data directory                                                           */
/* ------------------------------------------------------------------------ */

#define EDGE_DATA_DIR_ERROR (edge_data_dir_error_quark ())
GQuark edge_data_dir_error_quark (void);
typedef enum {
  EDGE_DATA_DIR_ERROR_IO,
  EDGE_DATA_DIR_ERROR_IN_USE, /* another edged holds the lock */
} EdgeDataDirError;

typedef struct _EdgeDataDir EdgeDataDir;

/* Creates @path (mode 0700) if missing and takes its exclusive lock
 * (PATH/edged.lock, holding the owner's pid). A second daemon on the same
 * directory gets EDGE_DATA_DIR_ERROR_IN_USE naming the first one's pid.
 * (transfer full) */
EdgeDataDir *edge_data_dir_open (const char *path, GError **error);
/* The absolute path. (transfer none) */
const char *edge_data_dir_path (EdgeDataDir *dir);
/* Releases the lock. Accepts NULL. */
void edge_data_dir_close (EdgeDataDir *dir);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (EdgeDataDir, edge_data_dir_close)

/* ------------------------------------------------------------------------ */
/* State database (SQLite, WAL)                                             */
/* ------------------------------------------------------------------------ */

#define EDGE_STATE_ERROR (edge_state_error_quark ())
GQuark edge_state_error_quark (void);
typedef enum {
  EDGE_STATE_ERROR_OPEN,
  EDGE_STATE_ERROR_SQL,
  EDGE_STATE_ERROR_TOO_NEW, /* written by a newer edged */
} EdgeStateError;

typedef struct _EdgeState EdgeState;

/* Opens (creating) @path in WAL mode with foreign keys on and runs the core
 * schema migrations. (transfer full) */
EdgeState *edge_state_open (const char *path, GError **error);

/* Brings @module's tables to the last of @steps: step i (0-based) moves the
 * schema from version i to i + 1; each step runs in its own transaction.
 * Versions are kept per module in the table schema_versions. */
gboolean edge_state_migrate (EdgeState *state, const char *module, const char *const *steps,
                             guint n_steps, GError **error);

/* The instance id, created with the database: a random UUID. (transfer none) */
const char *edge_state_instance_id (EdgeState *state);

/* The handle, for modules' own statements. Main thread only. (transfer none) */
sqlite3 *edge_state_db (EdgeState *state);

/* TRUE when the database answers a trivial query. */
gboolean edge_state_ping (EdgeState *state, GError **error);

/* Checkpoints the WAL and closes. Accepts NULL. */
void edge_state_close (EdgeState *state);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (EdgeState, edge_state_close)

/* ------------------------------------------------------------------------ */
/* Keys and AES-256-GCM frames (docs/internals/crypto.md)                    */
/* ------------------------------------------------------------------------ */

#define EDGE_CRYPTO_ERROR (edge_crypto_error_quark ())
GQuark edge_crypto_error_quark (void);
typedef enum {
  EDGE_CRYPTO_ERROR_IO,          /* key file unreadable or unwritable */
  EDGE_CRYPTO_ERROR_KEY_FILE,    /* key file malformed or its mode too open */
  EDGE_CRYPTO_ERROR_FORMAT,      /* not a frame: bad magic, version, lengths */
  EDGE_CRYPTO_ERROR_UNKNOWN_KEY, /* frame sealed under a key the ring lacks */
  EDGE_CRYPTO_ERROR_AUTH,        /* tag mismatch: tampered, wrong key or context */
  EDGE_CRYPTO_ERROR_TRUNCATED,   /* a sealed stream ended before its last chunk */
  EDGE_CRYPTO_ERROR_LIMIT,       /* a length beyond the frame limits */
  EDGE_CRYPTO_ERROR_INTERNAL,    /* OpenSSL failed */
} EdgeCryptoError;

#define EDGE_KEY_BYTES 32
#define EDGE_FRAME_HEADER_BYTES 44
#define EDGE_FRAME_TAG_BYTES 16
#define EDGE_FRAME_OVERHEAD (EDGE_FRAME_HEADER_BYTES + EDGE_FRAME_TAG_BYTES)
/* Largest payload one frame carries; larger objects use a sealed stream. */
#define EDGE_FRAME_MAX_PAYLOAD (64u * 1024 * 1024)
/* Default chunk size of a sealed stream. */
#define EDGE_SEAL_STREAM_CHUNK (64u * 1024)

typedef struct _EdgeKeyring EdgeKeyring;

/* Opens the master key file at @path. When it does not exist and @create is
 * TRUE, a new file with one random key is written with mode 0600. A file
 * readable or writable by group or others is refused (EDGE_CRYPTO_ERROR_KEY_FILE)
 * with a message naming the fix. (transfer full) */
EdgeKeyring *edge_keyring_open (const char *path, gboolean create, GError **error);

/* Appends a new random key to the file and makes it the active one: new
 * frames use it, frames under older keys still open. */
gboolean edge_keyring_rotate (EdgeKeyring *keyring, GError **error);

/* Id of the key new frames are sealed under. */
guint32 edge_keyring_active_id (EdgeKeyring *keyring);
guint edge_keyring_count (EdgeKeyring *keyring);

void edge_keyring_free (EdgeKeyring *keyring);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (EdgeKeyring, edge_keyring_free)

/* A cipher seals and opens frames for one @context ("stream/sensors",
 * "camera/door"): its keys are derived from the master keys with HKDF over the
 * context, so a frame moved to another context does not open. Each cipher
 * seals under a fresh random session salt with a counter nonce, so nonces
 * never repeat under one derived key. One thread at a time; the keyring is
 * borrowed and must outlive the cipher. */
typedef struct _EdgeCipher EdgeCipher;

EdgeCipher *edge_cipher_new (EdgeKeyring *keyring, const char *context, GError **error);
void edge_cipher_free (EdgeCipher *cipher);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (EdgeCipher, edge_cipher_free)

/* Seals @len bytes into @out, which must have room for len + EDGE_FRAME_OVERHEAD
 * bytes. @aad (nullable) is authenticated, not stored: the opener must pass
 * the same bytes. */
gboolean edge_cipher_seal (EdgeCipher *cipher, const guint8 *plain, gsize len, const guint8 *aad,
                           gsize aad_len, guint8 *out, GError **error);

/* Opens the frame at the start of @frame (exactly one frame of @frame_len
 * bytes) into @out, which must have room for frame_len - EDGE_FRAME_OVERHEAD
 * bytes; *ret_len is the plaintext length. Nothing is written to *ret_len on
 * failure, and @out then holds no plaintext. */
gboolean edge_cipher_open (EdgeCipher *cipher, const guint8 *frame, gsize frame_len,
                           const guint8 *aad, gsize aad_len, guint8 *out, gsize *ret_len,
                           GError **error);

/* Reads the header at @buf and returns the whole frame's length, so that a
 * reader knows how many bytes to fetch; -1 with @error when @buf (at least
 * EDGE_FRAME_HEADER_BYTES long) does not start a frame. */
gssize edge_frame_length (const guint8 *buf, gsize len, GError **error);

/* Sealed streams: a large object as a sequence of frames, each chunk bound to
 * its position and to the stream, the last one marked final, so that dropped,
 * reordered, spliced or truncated chunks are all detected. */
typedef struct _EdgeSealStream EdgeSealStream;
EdgeSealStream *edge_seal_stream_new (EdgeCipher *cipher, const guint8 *aad, gsize aad_len,
                                      gsize chunk_size);
/* Appends whole sealed chunks for @data to @out (partial chunks are kept). */
gboolean edge_seal_stream_write (EdgeSealStream *stream, const guint8 *data, gsize len,
                                 GByteArray *out, GError **error);
/* Seals what is left as the final chunk. The stream takes no more data. */
gboolean edge_seal_stream_finish (EdgeSealStream *stream, GByteArray *out, GError **error);
void edge_seal_stream_free (EdgeSealStream *stream);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (EdgeSealStream, edge_seal_stream_free)

typedef struct _EdgeOpenStream EdgeOpenStream;
EdgeOpenStream *edge_open_stream_new (EdgeCipher *cipher, const guint8 *aad, gsize aad_len);
/* Feeds sealed bytes in any split; appends authenticated plaintext to @out. */
gboolean edge_open_stream_write (EdgeOpenStream *stream, const guint8 *data, gsize len,
                                 GByteArray *out, GError **error);
/* Fails with EDGE_CRYPTO_ERROR_TRUNCATED unless the final chunk was seen. */
gboolean edge_open_stream_finish (EdgeOpenStream *stream, GError **error);
void edge_open_stream_free (EdgeOpenStream *stream);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (EdgeOpenStream, edge_open_stream_free)

/* ------------------------------------------------------------------------ */
/* JSON without a tree: a pull reader and string output                     */
/* ------------------------------------------------------------------------ */

/* For the hot paths (Kinesis PutRecords in, GetRecords out), where a
 * json-glib tree costs more than the work itself. The reader walks one
 * whole document in memory and validates it strictly (RFC 8259: UTF-8, no
 * raw control characters, the number grammar, nothing after the value,
 * nesting at most EDGE_JSON_READER_MAX_DEPTH). After the first error every
 * call returns FALSE (or EDGE_JSON_NONE) and @error says what and at which
 * byte. A value-level contract: after next_member or next_element returns
 * TRUE, the caller reads or skips exactly one value.
 *
 *   edge_json_reader_enter_object (&r);
 *   while (edge_json_reader_next_member (&r, &name, &len))
 *     ... read or skip the value ...
 *   if (r.error || !edge_json_reader_finish (&r)) ... refuse ...
 */
#define EDGE_JSON_READER_MAX_DEPTH 64

typedef enum {
  EDGE_JSON_NONE, /* an error, the end, or no valid value here */
  EDGE_JSON_OBJECT,
  EDGE_JSON_ARRAY,
  EDGE_JSON_STRING,
  EDGE_JSON_NUMBER,
  EDGE_JSON_TRUE,
  EDGE_JSON_FALSE,
  EDGE_JSON_NULL,
} EdgeJsonToken;

typedef struct {
  const char *start, *p, *end; /* borrowed document */
  guint depth;
  gboolean first;              /* the open container has produced no item yet */
  GString *scratch;            /* unescaped values */
  GString *name_scratch;       /* unescaped member names */
  char *error;                 /* the first error, with its byte offset */
} EdgeJsonReader;

/* @data is borrowed and must outlive the reader. */
void edge_json_reader_init (EdgeJsonReader *r, const char *data, gsize len);
/* Frees what the reader allocated (the reader itself is the caller's). */
void edge_json_reader_clear (EdgeJsonReader *r);
/* The kind of the next value, without consuming it. */
EdgeJsonToken edge_json_reader_peek (EdgeJsonReader *r);
gboolean edge_json_reader_enter_object (EdgeJsonReader *r);
gboolean edge_json_reader_enter_array (EdgeJsonReader *r);
/* TRUE with the next member's name (not NUL-terminated; valid until the
 * next member name is read); FALSE at the closing brace (consumed) or on an
 * error. */
gboolean edge_json_reader_next_member (EdgeJsonReader *r, const char **ret_name, gsize *ret_len);
/* TRUE before the next element; FALSE at the closing bracket or an error. */
gboolean edge_json_reader_next_element (EdgeJsonReader *r);
/* A string value, unescaped and valid UTF-8, possibly holding U+0000; not
 * NUL-terminated, pointing into the document or into the reader (then valid
 * until the next value is read). */
gboolean edge_json_reader_read_string (EdgeJsonReader *r, const char **ret, gsize *ret_len);
/* A number value as it stands in the document (the JSON number grammar),
 * not NUL-terminated. */
gboolean edge_json_reader_read_number (EdgeJsonReader *r, const char **ret, gsize *ret_len);
/* For callers that scan a string's characters themselves (a base64 decoder
 * that decodes as it scans): the first character after the opening quote,
 * or NULL (the next value is no string). Having seen only printable ASCII
 * other than '\\' up to the closing quote, the caller moves past it with
 * edge_json_reader_string_done (@after: just past the quote); otherwise it
 * reads the string as usual, the reader unmoved. */
const char *edge_json_reader_string_begin (EdgeJsonReader *r);
void edge_json_reader_string_done (EdgeJsonReader *r, const char *after);
/* Skips (and validates) one value of any kind. */
gboolean edge_json_reader_skip (EdgeJsonReader *r);
/* After the top-level value: TRUE when nothing but whitespace remains. */
gboolean edge_json_reader_finish (EdgeJsonReader *r);

/* Appends @s (@len bytes of UTF-8) as a quoted JSON string. */
void edge_json_append_string (GString *out, const char *s, gsize len);
/* Appends @value / 10^@decimals in decimal with @decimals digits after the
 * point (none, and no point, for 0): 1764494400123 with 3 is
 * "1764494400.123". Without printf, for what is written per record or per
 * request. @decimals is at most 18. */
void edge_string_append_fixed (GString *out, guint64 value, guint decimals);

/* ------------------------------------------------------------------------ */
/* Metrics registry (Prometheus text exposition)                            */
/* ------------------------------------------------------------------------ */

typedef enum {
  EDGE_METRIC_COUNTER,
  EDGE_METRIC_GAUGE,
  EDGE_METRIC_HISTOGRAM,
} EdgeMetricType;

typedef struct _EdgeMetrics EdgeMetrics;
typedef void (*EdgeMetricsCollectFunc) (EdgeMetrics *metrics, gpointer user_data);

/* Cap on the label sets one family keeps; observations for new label sets
 * past it are counted in edged_metrics_dropped_series_total. */
#define EDGE_METRICS_MAX_SERIES 1000

EdgeMetrics *edge_metrics_new (void);
void edge_metrics_free (EdgeMetrics *metrics);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (EdgeMetrics, edge_metrics_free)

/* Declares a family. @buckets (upper bounds, ascending, @n_buckets of them)
 * only for histograms; copied. Declaring a name twice is a programmer error. */
void edge_metrics_declare (EdgeMetrics *metrics, const char *name, EdgeMetricType type,
                           const char *help, const double *buckets, guint n_buckets);

/* @labels is the inside of the braces, already escaped, e.g.
 * "method=\"GET\",code=\"200\"", or "" for none. All three are thread-safe. */
void edge_metrics_add (EdgeMetrics *metrics, const char *name, const char *labels, double value);
void edge_metrics_set (EdgeMetrics *metrics, const char *name, const char *labels, double value);
void edge_metrics_observe (EdgeMetrics *metrics, const char *name, const char *labels,
                           double value);

/* Escapes a label value (backslash, quote, newline). (transfer full) */
char *edge_metrics_escape_label (const char *value);

/* @func runs at every render (on the rendering thread), to set gauges. */
void edge_metrics_add_collector (EdgeMetrics *metrics, EdgeMetricsCollectFunc func,
                                 gpointer user_data);

/* Adds the standard process_* families, read from /proc at render time. */
void edge_metrics_add_process_collector (EdgeMetrics *metrics);

/* The exposition text, format 0.0.4. (transfer full) */
char *edge_metrics_render (EdgeMetrics *metrics);

G_END_DECLS
