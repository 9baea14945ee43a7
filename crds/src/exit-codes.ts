// The job-image's exit-code contract, as the controller's podFailurePolicy sees it. The Python side
// (job-image/src/unmix_job/exit_codes.py) prints its table with `python -m unmix_job.exit_codes`;
// a test fails when the two differ.
import type { FailureClass } from "./separationjob.ts";

export const EXIT_CODES = {
  OK: 0,
  UNDECODABLE_INPUT: 10,
  NO_AUDIO_STREAM: 11,
  INPUT_TOO_LONG: 12,
  OUTPUT_TOO_LARGE: 13,
  SILENT_INPUT: 14,
  VIDEO_TOO_LARGE: 15,
} as const;

/** Exit codes that mean the input itself is bad: retrying cannot help, so the Job fails at once. */
export const BAD_INPUT_EXIT_CODES: readonly number[] = [
  EXIT_CODES.UNDECODABLE_INPUT,
  EXIT_CODES.NO_AUDIO_STREAM,
  EXIT_CODES.INPUT_TOO_LONG,
  EXIT_CODES.OUTPUT_TOO_LARGE,
  EXIT_CODES.SILENT_INPUT,
  EXIT_CODES.VIDEO_TOO_LARGE,
];

export function failureClassOfExitCode(code: number): FailureClass {
  switch (code) {
    case EXIT_CODES.UNDECODABLE_INPUT:
      return "BadInput";
    case EXIT_CODES.NO_AUDIO_STREAM:
      return "NoAudio";
    case EXIT_CODES.INPUT_TOO_LONG:
      return "TooLong";
    case EXIT_CODES.OUTPUT_TOO_LARGE:
      return "OutputTooLarge";
    case EXIT_CODES.SILENT_INPUT:
      return "Silent";
    case EXIT_CODES.VIDEO_TOO_LARGE:
      return "VideoTooLarge";
    default:
      return "Internal";
  }
}
