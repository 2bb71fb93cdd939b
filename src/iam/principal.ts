/** Who signed a request: a root account (tenant) or one of its sub-accounts, through one API key. */
export interface Principal {
  /** The root account's uin: the tenant that owns keys. */
  tenantUin: string;
  /** The acting uin: the root's own, or the sub-account's. */
  uin: string;
  kind: 'root' | 'user';
  name: string;
  secretId: string;
}
