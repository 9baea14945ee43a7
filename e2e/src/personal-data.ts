// What identifies a WhatsApp user, in every form it can leak in: the number (bare, with "+", and
// base64 at each of the three alignments, as inside a wamid), any wamid, the profile name. The
// end-to-end tests search logs, Events, conditions, spans and what the `view` role reads for these.
import { escapeNonAscii } from "@unmix/core/whatsapp";

/**
 * The substrings every base64 (or base64url) text that encodes `text` contains, whatever the bytes
 * before it: for each of the three alignments, the 4-character groups only `text`'s own bytes
 * determine. A wamid holds the number at one of them (Meta's: at offset 3, so alignment 0).
 */
export function base64Forms(text: string): string[] {
  const bytes = Buffer.from(text);
  const forms = new Set<string>();
  for (let offset = 0; offset < 3; offset++) {
    const aligned = Buffer.concat([Buffer.alloc(offset), bytes]);
    // the first group mixes in `offset` unknown bytes; the last partial one, whatever follows
    const determined = aligned.toString("base64").slice(offset === 0 ? 0 : 4, Math.floor(aligned.length / 3) * 4);
    forms.add(determined);
    forms.add(determined.replace(/\+/g, "-").replace(/\//g, "_"));
  }
  return [...forms].filter((f) => f.length >= 8);
}

export interface Person {
  waId?: string;
  name?: string;
}

/** Everything that must not appear: the number and its forms, the profile name, and "wamid.". */
export function personalForms(p: Person): string[] {
  const forms = ["wamid."];
  if (p.waId) forms.push(p.waId, `+${p.waId}`, ...base64Forms(p.waId));
  // as written, and as Meta's JSON escapes it (\u00eb)
  if (p.name) forms.push(p.name, escapeNonAscii(JSON.stringify(p.name)).slice(1, -1));
  return [...new Set(forms)];
}

/** Each `text` that holds one of `forms`, as "<where>: <form> in <excerpt>". */
export function findLeaks(texts: Iterable<{ where: string; text: string }>, forms: string[]): string[] {
  const leaks: string[] = [];
  for (const { where, text } of texts) {
    for (const f of forms) {
      const at = text.indexOf(f);
      if (at >= 0) leaks.push(`${where}: ${JSON.stringify(f)} in …${text.slice(Math.max(0, at - 80), at + f.length + 80)}…`);
    }
  }
  return leaks;
}
