import { monotonicFactory } from 'ulid';

const next = monotonicFactory();

/** A ULID: sortable by creation time, unique across processes. */
export function newId(): string {
  return next();
}

/** Lease ids embed nothing about the node; routing uses the lease's nodeId. */
export const newLeaseId = newId;
export const newResourceId = newId;
export const newNodeId = newId;
