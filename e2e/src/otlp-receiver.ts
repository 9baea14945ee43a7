// An in-process OTLP/HTTP trace receiver for the harness: collects the spans every service exports
// (JSON encoding, as @opentelemetry/exporter-trace-otlp-http sends them; protobuf, as the job image's
// Python SDK sends them), so a test can follow one message through every hop.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  /** OTLP's SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  attributes: Record<string, unknown>;
  /** Events (exceptions among them) with their attributes. */
  events: { name: string; attributes: Record<string, unknown> }[];
  status: { code?: number; message?: string };
}

export interface OtlpReceiver {
  /** Base URL for OTEL_EXPORTER_OTLP_ENDPOINT (the exporters append /v1/traces). */
  url: string;
  spans: ReceivedSpan[];
  stop(): Promise<void>;
}

type AnyValue = { stringValue?: string; intValue?: string | number; doubleValue?: number; boolValue?: boolean; arrayValue?: { values?: AnyValue[] } };
type KeyValue = { key: string; value: AnyValue };
const anyValue = (v: AnyValue): unknown => v.stringValue ?? v.intValue ?? v.doubleValue ?? v.boolValue ?? v.arrayValue?.values?.map(anyValue);
const attrs = (kvs: KeyValue[] = []) => Object.fromEntries(kvs.map((kv) => [kv.key, anyValue(kv.value)]));

// OTLP protobuf, decoded into the JSON encoding's shape (only the fields read below).
type Field = { n: number; v: bigint | Buffer };
function fields(b: Buffer): Field[] {
  const out: Field[] = [];
  let i = 0;
  const varint = () => {
    let r = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const x = b[i++] as number;
      r |= BigInt(x & 0x7f) << shift;
      if (x < 0x80) return r;
    }
  };
  const bytes = (len: number) => {
    i += len;
    return b.subarray(i - len, i);
  };
  while (i < b.length) {
    const key = Number(varint());
    const wire = key & 7;
    if (wire === 0) out.push({ n: key >>> 3, v: varint() });
    else if (wire === 1) out.push({ n: key >>> 3, v: bytes(8) });
    else if (wire === 2) out.push({ n: key >>> 3, v: bytes(Number(varint())) });
    else if (wire === 5) out.push({ n: key >>> 3, v: bytes(4) });
    else throw new Error(`protobuf wire type ${wire}`);
  }
  return out;
}
const all = (b: Buffer, n: number) =>
  fields(b)
    .filter((f) => f.n === n)
    .map((f) => f.v as Buffer);
const one = (b: Buffer, n: number) => fields(b).find((f) => f.n === n)?.v;
const text = (b: Buffer, n: number) => (one(b, n) as Buffer | undefined)?.toString("utf8");
const hex = (b: Buffer, n: number) => (one(b, n) as Buffer | undefined)?.toString("hex") || undefined;
function anyValuePb(b: Buffer): AnyValue {
  const [f] = fields(b);
  if (f?.n === 1) return { stringValue: (f.v as Buffer).toString("utf8") };
  if (f?.n === 2) return { boolValue: f.v !== 0n };
  if (f?.n === 3) return { intValue: BigInt.asIntN(64, f.v as bigint).toString() };
  if (f?.n === 4) return { doubleValue: (f.v as Buffer).readDoubleLE(0) };
  if (f?.n === 5) return { arrayValue: { values: all(f.v as Buffer, 1).map(anyValuePb) } };
  return {};
}
const kvsPb = (b: Buffer, n: number): KeyValue[] =>
  all(b, n).map((kv) => ({ key: text(kv, 1) ?? "", value: anyValuePb((one(kv, 2) as Buffer) ?? Buffer.alloc(0)) }));
const tracesPb = (b: Buffer) => ({
  resourceSpans: all(b, 1).map((rs) => ({
    resource: { attributes: kvsPb((one(rs, 1) as Buffer) ?? Buffer.alloc(0), 1) },
    scopeSpans: all(rs, 2).map((ss) => ({
      spans: all(ss, 2).map((s) => {
        const status = one(s, 15) as Buffer | undefined;
        return {
          traceId: hex(s, 1),
          spanId: hex(s, 2),
          parentSpanId: hex(s, 4),
          name: text(s, 5),
          kind: Number(one(s, 6) ?? 0n),
          attributes: kvsPb(s, 9),
          events: all(s, 11).map((e) => ({ name: text(e, 2), attributes: kvsPb(e, 3) })),
          status: status ? { code: Number(one(status, 3) ?? 0n), ...(text(status, 2) ? { message: text(status, 2) } : {}) } : {},
        };
      }),
    })),
  })),
});

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const type = String(req.headers["content-type"]);
      const protobuf = type.includes("protobuf");
      if (req.method !== "POST" || !req.url?.endsWith("/v1/traces") || !(type.includes("json") || protobuf)) {
        res.writeHead(415).end();
        return;
      }
      try {
        const body = protobuf ? tracesPb(Buffer.concat(chunks)) : JSON.parse(Buffer.concat(chunks).toString("utf8"));
        for (const rs of body.resourceSpans ?? []) {
          const service = String(attrs(rs.resource?.attributes)["service.name"] ?? "unknown");
          for (const ss of rs.scopeSpans ?? []) {
            for (const s of ss.spans ?? []) {
              spans.push({
                service,
                traceId: s.traceId,
                spanId: s.spanId,
                ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
                name: s.name,
                kind: s.kind,
                attributes: attrs(s.attributes),
                events: (s.events ?? []).map((e: { name: string; attributes?: KeyValue[] }) => ({ name: e.name, attributes: attrs(e.attributes) })),
                status: s.status ?? {},
              });
            }
          }
        }
        if (protobuf) res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
        else res.writeHead(200, { "content-type": "application/json" }).end("{}");
      } catch {
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, spans, stop: () => new Promise((resolve) => server.close(() => resolve())) };
}
