export * from './log.js';
export * from './nats.js';
export * from './rpc.js';
export * from './actor.js';
export * from './http.js';
export * from './shutdown.js';
export * from './requester.js';
export * from './micro.js';
