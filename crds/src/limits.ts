// Limits that the services and the job image both enforce, defined once. The job image's copy
// (job-image/src/unmix_job/limits.py) prints its table with `python -m unmix_job.limits`; a test
// fails when the two differ.
const MiB = 1024 * 1024;

export const LIMITS = {
  /**
   * WhatsApp takes audio and video uploads up to "16 MB": read as decimal megabytes, the smaller
   * reading, so a reply is never over either. The job refuses a larger result; the controller checks again.
   */
  whatsappUploadBytes: 16_000_000,
  /** WhatsApp delivers user media up to 100 MB (larger arrives as error 131052). */
  whatsappInboundBytes: 100 * MiB,
  /** The largest input taken by default (MAX_INPUT_BYTES, in the ingress, the controller and the job). */
  defaultMaxInputBytes: 16 * MiB,
  /** The longest input taken by default, in seconds (MAX_DURATION_SECONDS in the controller and the job). */
  defaultMaxDurationSeconds: 600,
  /**
   * The largest video picture the job takes, in pixels (a phone's 4K): decoding cost grows with it,
   * and a few MB can declare hours of 8K. The job refuses more at probe (exit VIDEO_TOO_LARGE).
   */
  maxVideoPixels: 3840 * 2160,
  /** The highest video frame rate the job takes (frames per second), refused likewise. */
  maxVideoFrameRate: 60,
} as const;
