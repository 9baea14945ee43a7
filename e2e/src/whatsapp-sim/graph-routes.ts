// The Graph API routes the product uses (reference §4–7): media metadata, download, upload and
// delete, messages, and the business account's message templates (their review status). Every call is recorded, checked for the bearer token, and may be made to
// fail or stall by a test first.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { SimCore } from "./core.ts";
import { type Fault, invalidParameter, META_ERRORS, type MetaError, metaErrorBody, type SimRoute, unknownObject } from "./faults.ts";
import { baseMimeType, type StoredMedia, uploadRejection } from "./media.ts";
import { describeIssues, MarkRead, OutgoingMessage } from "./outgoing.ts";

const VERSION = /^v\d+\.\d+$/;

function sendError(reply: FastifyReply, e: MetaError | Exclude<Fault, string>) {
  if (!("code" in e)) return reply.code(e.httpStatus).send();
  return reply.code(e.httpStatus).send(metaErrorBody(e));
}

export function registerGraphRoutes(app: FastifyInstance, core: SimCore): void {
  const guarded = (route: SimRoute) => ({
    async preHandler(req: FastifyRequest, reply: FastifyReply) {
      core.record(req);
      const fault = await core.faults.take(route);
      if (fault) return sendError(reply, fault);
      if (req.headers.authorization !== `Bearer ${core.accessToken}`) return sendError(reply, META_ERRORS["invalid-token"]);
      const version = (req.params as { version?: string }).version;
      if (version !== undefined && !VERSION.test(version)) return sendError(reply, invalidParameter(`Unknown Graph API version ${version}`));
    },
  });

  const ownMedia = (id: string): StoredMedia | undefined => core.media.get(id);

  app.get<{ Params: { version: string; mediaId: string }; Querystring: { phone_number_id?: string } }>(
    "/:version/:mediaId",
    guarded("media-info"),
    async (req, reply) => {
      const media = ownMedia(req.params.mediaId);
      const wrongNumber = req.query.phone_number_id !== undefined && media?.owner !== req.query.phone_number_id;
      if (!media || wrongNumber) return sendError(reply, unknownObject(req.params.mediaId, "get"));
      return {
        messaging_product: "whatsapp",
        url: core.media.issueUrl(media, core.baseUrl()),
        mime_type: media.mimeType,
        sha256: media.sha256.toString(core.sha256Encoding),
        file_size: String(media.bytes.length),
        id: media.id,
      };
    },
  );

  app.get<{ Querystring: { mid?: string; hash?: string } }>("/whatsapp_business/attachments/", guarded("media-download"), async (req, reply) => {
    const media = core.media.resolveUrl(req.query.mid ?? "", req.query.hash ?? "");
    if (!media) return reply.code(404).send();
    return reply.header("content-type", media.mimeType).send(media.bytes);
  });

  app.delete<{ Params: { version: string; mediaId: string } }>("/:version/:mediaId", guarded("media-delete"), async (req, reply) => {
    if (!core.media.delete(req.params.mediaId)) return sendError(reply, unknownObject(req.params.mediaId, "delete"));
    return { success: true };
  });

  app.post<{ Params: { version: string; phoneNumberId: string } }>("/:version/:phoneNumberId/media", guarded("media-upload"), async (req, reply) => {
    if (req.params.phoneNumberId !== core.business.phoneNumberId) return sendError(reply, unknownObject(req.params.phoneNumberId, "post"));
    const form = req.body;
    if (!(form instanceof FormData)) return sendError(reply, invalidParameter("The upload must be multipart/form-data"));
    const file = form.get("file");
    if (form.get("messaging_product") !== "whatsapp") return sendError(reply, invalidParameter("Param messaging_product must be whatsapp"));
    if (!(file instanceof File)) return sendError(reply, invalidParameter("Param file is required"));
    const mimeType = file.type || String(form.get("type") ?? "");
    const bytes = Buffer.from(await file.arrayBuffer());
    const rejection = uploadRejection(bytes, mimeType);
    if (rejection) return sendError(reply, { ...META_ERRORS["media-rejected"], details: rejection });
    return { id: core.media.add(bytes, mimeType, core.business.phoneNumberId, "uploaded").id };
  });

  // Meta's `name` filter matches names containing it; the answer is one page (paging omitted)
  app.get<{ Params: { version: string; wabaId: string }; Querystring: { name?: string; status?: string; language?: string } }>(
    "/:version/:wabaId/message_templates",
    guarded("message-templates"),
    async (req, reply) => {
      if (req.params.wabaId !== core.business.wabaId) return sendError(reply, unknownObject(req.params.wabaId, "get"));
      const { name, status, language } = req.query;
      const data = [...core.templates.values()].filter(
        (t) => (!name || t.name.includes(name)) && (!status || t.status === status) && (!language || t.language === language),
      );
      return { data };
    },
  );

  app.post<{ Params: { version: string; phoneNumberId: string } }>("/:version/:phoneNumberId/messages", guarded("messages"), async (req, reply) => {
    if (req.params.phoneNumberId !== core.business.phoneNumberId) return sendError(reply, unknownObject(req.params.phoneNumberId, "post"));
    const body = req.body as Record<string, unknown> | null;
    if (body && "status" in body) {
      const read = MarkRead.safeParse(body);
      if (!read.success) return sendError(reply, invalidParameter(describeIssues(read.error)));
      if (!core.inbound.has(read.data.message_id)) return sendError(reply, invalidParameter(`Param message_id: no message ${read.data.message_id}`));
      core.markRead(read.data.message_id, read.data.typing_indicator !== undefined);
      return { success: true };
    }
    const parsed = OutgoingMessage.safeParse(body);
    if (!parsed.success) return sendError(reply, invalidParameter(describeIssues(parsed.error)));
    const m = parsed.data;
    const ref = m.type === "audio" ? m.audio : m.type === "video" ? m.video : undefined;
    if (ref?.id !== undefined) {
      const media = ownMedia(ref.id);
      if (!media) return sendError(reply, invalidParameter(`Param ${m.type}['id'] is not a valid whatsapp business account media attachment ID`));
      if (!baseMimeType(media.mimeType).startsWith(`${m.type}/`))
        return sendError(reply, { ...META_ERRORS["media-rejected"], details: `${media.mimeType} cannot be sent as ${m.type}` });
    }
    if (m.type === "template") {
      const known = core.templates.get(`${m.template.name}/${m.template.language.code}`);
      if (known && known.status !== "APPROVED") return sendError(reply, META_ERRORS["template-unavailable"]);
    }
    const sent = core.acceptMessage(m);
    return {
      messaging_product: "whatsapp",
      contacts: [{ input: m.to ?? m.recipient, ...(m.to !== undefined ? { wa_id: sent.to } : { user_id: sent.to }) }],
      messages: [{ id: sent.id }],
    };
  });
}
