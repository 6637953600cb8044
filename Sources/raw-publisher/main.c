/*
 * raw-publisher: the baseline for the iomt-agent benchmark (see BENCHMARKS.md), and the
 * counting subscriber it uses. Plain libmosquitto, one thread, no buffer, no database.
 *
 *   raw-publisher pub HOST PORT COUNT SIZE QOS WINDOW TOPIC PROTOCOL(5|311) CLIENT_ID
 *       Publishes COUNT messages of SIZE bytes with at most WINDOW unacknowledged (its own
 *       window, refilled from on_publish; mosquitto_max_inflight_messages_set(WINDOW) too).
 *       Payload: {"id":"raw-<n>","pad":"xxx..."} padded to SIZE bytes.
 *       Prints "elapsed_ns=<connect..last ack> acked=<n>" and exits 0 when all are acknowledged.
 *   raw-publisher sub HOST PORT TOPIC CLIENT_ID CLEAN(0|1) EXPECT IDLE_MS MAX_MS
 *       Subscribes (QoS 1, MQTT 3.1.1) and prints "<CLOCK_REALTIME ns> <key>" per message, key
 *       being the value of the first "id":"..." in the payload (the reading id). Exits after
 *       EXPECT messages (0: right after SUBACK, to create a persistent session; -1: no limit), after IDLE_MS
 *       without a message once one arrived, or after MAX_MS.
 */
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long long now_ns(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- pub ---- */
static long long p_count, p_sent, p_acked, p_start, p_end;
static int p_qos, p_window;
static const char *p_topic;
static char *p_payload;
static int p_size;
static int p_failed;

static void publish_next(struct mosquitto *m) {
    if (p_sent >= p_count) return;
    /* unique id per message in the payload, the rest is padding */
    char head[64];
    int n = snprintf(head, sizeof head, "{\"id\":\"raw-%lld\",\"pad\":\"", p_sent);
    memcpy(p_payload, head, (size_t)n);
    int rc = mosquitto_publish(m, NULL, p_topic, p_size, p_payload, p_qos, false);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "publish: %s\n", mosquitto_strerror(rc));
        p_failed = 1;
        mosquitto_disconnect(m);
        return;
    }
    p_sent++;
    if (p_qos == 0) p_acked++;
}

static void pub_on_connect(struct mosquitto *m, void *obj, int rc) {
    (void)obj;
    if (rc != 0) { fprintf(stderr, "connack %d\n", rc); p_failed = 1; mosquitto_disconnect(m); return; }
    for (int i = 0; i < p_window; i++) publish_next(m);
}

static void pub_on_publish(struct mosquitto *m, void *obj, int mid) {
    (void)obj; (void)mid;
    if (p_qos > 0) p_acked++;
    if (p_acked >= p_count) {
        p_end = now_ns(CLOCK_MONOTONIC);
        mosquitto_disconnect(m);
        return;
    }
    publish_next(m);
}

static int run_pub(int argc, char **argv) {
    if (argc != 11) { fprintf(stderr, "usage: raw-publisher pub HOST PORT COUNT SIZE QOS WINDOW TOPIC PROTOCOL CLIENT_ID\n"); return 2; }
    const char *host = argv[2];
    int port = atoi(argv[3]);
    p_count = atoll(argv[4]);
    p_size = atoi(argv[5]);
    p_qos = atoi(argv[6]);
    p_window = atoi(argv[7]);
    p_topic = argv[8];
    int proto = atoi(argv[9]) == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311;
    if (p_size < 40) p_size = 40;
    if (p_window < 1) p_window = 1;
    p_payload = malloc((size_t)p_size);
    if (!p_payload) return 1;
    memset(p_payload, 'x', (size_t)p_size);
    p_payload[p_size - 2] = '"';
    p_payload[p_size - 1] = '}';

    mosquitto_lib_init();
    struct mosquitto *m = mosquitto_new(argv[10], true, NULL);
    if (!m) return 1;
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, proto);
    mosquitto_max_inflight_messages_set(m, (unsigned)p_window);
    mosquitto_connect_callback_set(m, pub_on_connect);
    mosquitto_publish_callback_set(m, pub_on_publish);
    p_start = now_ns(CLOCK_MONOTONIC);
    int rc = mosquitto_connect(m, host, port, 30);
    if (rc != MOSQ_ERR_SUCCESS) { fprintf(stderr, "connect: %s\n", mosquitto_strerror(rc)); return 1; }
    if (p_count == 0) p_end = now_ns(CLOCK_MONOTONIC);
    mosquitto_loop_forever(m, 1000, 1);
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    if (p_failed || p_acked < p_count) { fprintf(stderr, "acked %lld of %lld\n", p_acked, p_count); return 1; }
    printf("elapsed_ns=%lld acked=%lld\n", p_end - p_start, p_acked);
    return 0;
}

/* ---- sub ---- */
static long long s_expect, s_received, s_last_ns;
static int s_subscribed;
static const char *s_topic;

static void sub_on_connect(struct mosquitto *m, void *obj, int rc) {
    (void)obj;
    if (rc != 0) { fprintf(stderr, "connack %d\n", rc); mosquitto_disconnect(m); return; }
    mosquitto_subscribe(m, NULL, s_topic, 1);
}

static void sub_on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted) {
    (void)obj; (void)mid; (void)n; (void)granted;
    s_subscribed = 1;
    fprintf(stderr, "subscribed\n");
    if (s_expect == 0) mosquitto_disconnect(m);
}

static void sub_on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg) {
    (void)obj;
    long long t = now_ns(CLOCK_REALTIME);
    const char *p = msg->payload;
    int len = msg->payloadlen;
    const char *key = "?";
    int keylen = 1;
    for (int i = 0; i + 6 <= len; i++) {
        if (memcmp(p + i, "\"id\":\"", 6) == 0) {
            int j = i + 6;
            while (j < len && p[j] != '"') j++;
            key = p + i + 6;
            keylen = j - (i + 6);
            break;
        }
    }
    printf("%lld %.*s\n", t, keylen, key);
    s_received++;
    s_last_ns = now_ns(CLOCK_MONOTONIC);
    if (s_expect > 0 && s_received >= s_expect) mosquitto_disconnect(m);
}

static int run_sub(int argc, char **argv) {
    if (argc != 10) { fprintf(stderr, "usage: raw-publisher sub HOST PORT TOPIC CLIENT_ID CLEAN EXPECT IDLE_MS MAX_MS\n"); return 2; }
    const char *host = argv[2];
    int port = atoi(argv[3]);
    s_topic = argv[4];
    bool clean = atoi(argv[6]) != 0;
    s_expect = atoll(argv[7]);
    long long idle_ns = atoll(argv[8]) * 1000000LL;
    long long max_ns = atoll(argv[9]) * 1000000LL;
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    mosquitto_lib_init();
    struct mosquitto *m = mosquitto_new(argv[5], clean, NULL);
    if (!m) return 1;
    mosquitto_connect_callback_set(m, sub_on_connect);
    mosquitto_subscribe_callback_set(m, sub_on_subscribe);
    mosquitto_message_callback_set(m, sub_on_message);
    long long start = now_ns(CLOCK_MONOTONIC);
    int rc = mosquitto_connect(m, host, port, 30);
    if (rc != MOSQ_ERR_SUCCESS) { fprintf(stderr, "connect: %s\n", mosquitto_strerror(rc)); return 1; }
    for (;;) {
        rc = mosquitto_loop(m, 100, 1);
        if (rc == MOSQ_ERR_NO_CONN) break; /* we disconnected */
        if (rc != MOSQ_ERR_SUCCESS) { fprintf(stderr, "loop: %s\n", mosquitto_strerror(rc)); break; }
        long long t = now_ns(CLOCK_MONOTONIC);
        if (max_ns > 0 && t - start > max_ns) break;
        if (s_received > 0 && idle_ns > 0 && t - s_last_ns > idle_ns) break;
    }
    fflush(stdout);
    mosquitto_disconnect(m);
    mosquitto_loop(m, 100, 1);
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    fprintf(stderr, "received %lld\n", s_received);
    return s_subscribed ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "pub") == 0) return run_pub(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "sub") == 0) return run_sub(argc, argv);
    fprintf(stderr, "usage: raw-publisher pub|sub ... (see the comment at the top of main.c)\n");
    return 2;
}
