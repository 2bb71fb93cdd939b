/** The base of every layer's error classes: `name` is the concrete class's (KeyNotFoundError, not Error); a cause is kept. */
export abstract class NamedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}
