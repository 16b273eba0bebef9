import { codeText } from "./gen/index.js";

/**
 * HuddleError is how the SDK reports a failure: a server error (its code
 * and reason), a close of the connection (the close code), or a client-side
 * failure such as a timeout (code 0).
 */
export class HuddleError extends Error {
  /** A protocol code (4000-4999), a WebSocket close code, or 0 for client-side failures. */
  readonly code: number;
  /** Human-readable text from the server or the SDK. */
  readonly reason: string;
  /** Set when the server said retrying may succeed. */
  readonly retry: boolean;

  constructor(code: number, reason: string, retry = false) {
    const text = codeText[code];
    super(code === 0 ? reason : `${code}${text ? " " + text : ""}: ${reason}`);
    this.name = "HuddleError";
    this.code = code;
    this.reason = reason;
    this.retry = retry;
  }
}
