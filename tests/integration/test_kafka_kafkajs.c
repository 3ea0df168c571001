/*
 * The kafkajs program of the write-scaling literature, unmodified, against
 * the Kafka listener (docs/protocol-kafka.md): a producer that sends keyed
 * JSON orders and answers "202" once every send is acknowledged, and a
 * consumer group "order-writers" that processes them and sends failures
 * (negative amounts) to orders-dlq. Node from Debian, kafkajs 2.x from the
 * npm registry installed into a temporary directory at test time (skipped,
 * exit 77, when node or the registry is not there).
 *   - every order is consumed exactly once by the group across a consumer
 *     restart (a first consumer processes 120 and disconnects, a second the
 *     other 80: 200 distinct, none twice);
 *   - the 20 failures are in orders-dlq;
 *   - the group's committed offsets (over HTTP) are at the partitions' ends.
 */
#include "server.h"

static const char *ORDERS_JS =
    "// The producer and consumer group of the literature, against Spillway's\n"
    "// Kafka listener: keyed JSON orders; a consumer group \"order-writers\"\n"
    "// that processes them and sends failures (negative amounts) to orders-dlq.\n"
    "// Usage: node orders.js BROKER produce N | consume STOP_AFTER\n"
    "const { Kafka, logLevel } = require('kafkajs');\n"
    "const [broker, mode, arg] = process.argv.slice(2);\n"
    "const kafka = new Kafka({ clientId: 'orders-app', brokers: [broker], logLevel: logLevel.ERROR, retry: { retries: 10 } });\n"
    "\n"
    "async function produce(n) {\n"
    "  const producer = kafka.producer();\n"
    "  await producer.connect();\n"
    "  for (let i = 0; i < n; i += 50) {\n"
    "    const messages = [];\n"
    "    for (let j = i; j < Math.min(n, i + 50); j++)\n"
    "      messages.push({ key: `customer-${j % 13}`, value: JSON.stringify({ id: j, amount: j % 10 === 0 ? -1 : j }) });\n"
    "    await producer.send({ topic: 'orders', messages });\n"
    "  }\n"
    "  console.log('202'); // every send acknowledged\n"
    "  await producer.disconnect();\n"
    "}\n"
    "\n"
    "async function consume(stopAfter) {\n"
    "  const consumer = kafka.consumer({ groupId: 'order-writers', heartbeatInterval: 500, sessionTimeout: 10000 });\n"
    "  const dlq = kafka.producer();\n"
    "  await dlq.connect();\n"
    "  await consumer.connect();\n"
    "  await consumer.subscribe({ topic: 'orders', fromBeginning: true });\n"
    "  let seen = 0;\n"
    "  let done;\n"
    "  const finished = new Promise((r) => (done = r));\n"
    "  await consumer.run({\n"
    "    eachMessage: async ({ partition, message }) => {\n"
    "      if (seen >= stopAfter) return;\n"
    "      const order = JSON.parse(message.value.toString());\n"
    "      if (order.amount < 0)\n"
    "        await dlq.send({ topic: 'orders-dlq', messages: [{ key: message.key, value: message.value }] });\n"
    "      console.log(`GOT ${order.id} ${partition} ${message.offset}`);\n"
    "      seen++;\n"
    "      if (seen === stopAfter) done();\n"
    "    },\n"
    "  });\n"
    "  const timer = setTimeout(() => done(), 60000);\n"
    "  await finished;\n"
    "  clearTimeout(timer);\n"
    "  await consumer.disconnect();\n"
    "  await dlq.disconnect();\n"
    "}\n"
    "\n"
    "(mode === 'produce' ? produce(+arg) : consume(+arg)).catch((e) => {\n"
    "  console.error(e);\n"
    "  process.exit(1);\n"
    "});\n"
    "\n";

static const char *BIN;

/* Runs cmd; its stdout into out (cap bytes). Returns the exit status. */
static int sh(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sh(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    size_t n = 0, k;
    while (out && n + 1 < cap && (k = fread(out + n, 1, cap - 1 - n, f)) > 0)
        n += k;
    if (out)
        out[n] = 0;
    else
        while (fgetc(f) != EOF) {
        }
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    if (sh(NULL, 0, "command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1") != 0) {
        printf("test_kafka_kafkajs: skipped: node and npm are not installed\n");
        return 77;
    }
    char *dir = spw_test_tmpdir("kafkajs");
    if (sh(NULL, 0, "cd %s && timeout 300 npm install --no-audit --no-fund --silent kafkajs@2 >/dev/null 2>&1", dir) != 0) {
        printf("test_kafka_kafkajs: skipped: kafkajs could not be installed from the npm registry\n");
        spw_test_rmrf(dir);
        return 77;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/orders.js", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(ORDERS_JS, f);
    fclose(f);
    char data[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    srv s;
    const char *extra[] = {"--listen-kafka", "127.0.0.1:0", "--fsync-interval", "20ms", NULL};
    srv_start(&s, BIN, data, extra);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/streams/orders", "{\"partitions\":3}"), 201);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/streams/orders-dlq", "{\"partitions\":1}"), 201);

    static char out1[1 << 16], out2[1 << 16], out3[1 << 16];
    CHECK_EQ(sh(out1, sizeof out1, "cd %s && timeout 120 node orders.js 127.0.0.1:%d produce 200", dir, s.kafkaport), 0);
    CHECK(strcmp(out1, "202\n") == 0);
    CHECK_EQ(sh(out2, sizeof out2, "cd %s && timeout 120 node orders.js 127.0.0.1:%d consume 120", dir, s.kafkaport), 0);
    CHECK_EQ(sh(out3, sizeof out3, "cd %s && timeout 120 node orders.js 127.0.0.1:%d consume 80", dir, s.kafkaport), 0);
    static int seen[200];
    int lines = 0;
    for (int k = 0; k < 2; k++)
        for (const char *p = k ? out3 : out2; (p = strstr(p, "GOT ")); p++) {
            int id = atoi(p + 4);
            CHECK(id >= 0 && id < 200);
            seen[id]++;
            lines++;
        }
    CHECK_EQ(lines, 200);
    for (int i = 0; i < 200; i++)
        CHECK_EQ(seen[i], 1);
    resp r = http_json(s.port, "GET", "/v1/streams/orders-dlq/events?partition=0&offset=0", NULL);
    CHECK_EQ(r.status, 200);
    int dlq = 0;
    for (const char *p = r.body; (p = strstr(p, "\"amount\":-1")); p++)
        dlq++;
    CHECK_EQ(dlq, 20);
    free(r.body);
    r = http_json(s.port, "GET", "/v1/streams/orders/groups/order-writers", NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"lag\":0}") != NULL);
    free(r.body);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    return 0;
}
