/**
 * The errors every MetadataStore backend throws, whatever its technology: callers above the store
 * tell "try later" (StoreUnavailableError) from "refused" (the others) without knowing the backend.
 */
import { NamedError } from '../common/errors';

export abstract class StoreError extends NamedError {}

export class AliasExistsError extends StoreError {
  constructor(
    readonly ownerUin: string,
    readonly region: string,
    readonly alias: string,
  ) {
    super(`alias ${JSON.stringify(alias)} already exists for this account in region ${region}`);
  }
}

export class ConflictError extends StoreError {
  constructor(
    readonly keyId: string,
    detail: string,
  ) {
    super(`key ${keyId} changed concurrently: ${detail}`);
  }
}

export class KeyNotFoundError extends StoreError {
  constructor(readonly keyId: string) {
    super(`key ${keyId} not found`);
  }
}

export class ClusterStateConflictError extends StoreError {
  constructor(
    readonly clusterId: string,
    expected: number,
    found: number,
  ) {
    super(`state of cluster ${clusterId} changed concurrently: expected revision ${expected}, found ${found}`);
  }
}

export class QuotaExceededError extends StoreError {
  constructor(
    readonly ownerUin: string,
    readonly region: string,
    readonly limit: number,
  ) {
    super(`account already has ${limit} keys in region ${region}, the limit`);
  }
}

export class DataKeyNameExistsError extends StoreError {
  constructor(
    readonly region: string,
    readonly dataKeyName: string,
  ) {
    super(`data key name ${JSON.stringify(dataKeyName)} already exists for this account in region ${region}`);
  }
}

export class DataKeyNotFoundError extends StoreError {
  constructor(readonly dataKeyId: string) {
    super(`data key ${dataKeyId} not found`);
  }
}

export class DataKeyQuotaExceededError extends StoreError {
  constructor(
    readonly region: string,
    readonly limit: number,
  ) {
    super(`account already has ${limit} data keys in region ${region}, the limit`);
  }
}

/** A malformed record or query (the API layer validates first; this is the store's own guard). */
export class StoreInputError extends StoreError {}

/** The store cannot be used as configured (e.g. a Redis without persistence). */
export class StoreConfigError extends StoreError {}

/** The backing store cannot be reached right now (server down, partitioned or not answering): temporary, worth a retry. */
export class StoreUnavailableError extends StoreError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super(`the store cannot be reached (${detail})`, options);
  }
}
