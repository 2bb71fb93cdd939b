export * from './errors';
export * from './capabilities';
export * from './profile';
export * from './material';
export * from './member';
export * from './cluster';
export * from './config';
