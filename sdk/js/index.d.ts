// Types of the Waymark SDK's ES module entry (hand-written; see README.md).

export interface Options {
  /** Site id registered in the collector: 1–64 of `[a-z0-9._-]`. */
  site: string;
  /** Collector origin, e.g. `https://collector.example`. Default: the page's origin. */
  endpoint?: string;
  /** `required` (default): nothing is captured before `consent.grant()`. */
  consent?: 'required' | 'not-required';
  /** How single-page-app navigation is followed. Default `history`. */
  spa?: 'history' | 'hash' | 'off';
  /** Query parameters kept in URLs (others are removed). Default: the five `utm_*`. */
  keepParams?: string[] | string;
  /** `data-waymark-*` click attributes and the GA4 `dataLayer` bridge. Default `true`. */
  autoCart?: boolean;
}

export type CartAction = 'add' | 'remove' | 'view_cart' | 'checkout' | 'purchase';

export interface CartItem {
  id: string;
  name?: string;
  price?: number;
  /** Integer ≥ 1; default 1. */
  quantity?: number;
  category?: string;
  variant?: string;
}

export interface CartData {
  /** ISO 4217 code, required when a price or revenue is given. */
  currency?: string;
  items?: CartItem[];
  /** For `purchase`. */
  order_id?: string;
  /** For `purchase`. */
  revenue?: number;
}

export type Props = Record<string, string | number | boolean>;

export interface Waymark {
  consent: {
    /** The visitor agrees: capture starts (also overrides Global Privacy Control / DNT). */
    grant(): void;
    /** The visitor declines: everything queued is dropped and nothing is sent. */
    deny(): void;
    /** The visitor withdraws consent: as `deny`. */
    revoke(): void;
  };
  /** A manual page view (automatic ones need no call); none for an unchanged URL. */
  page(): void;
  /** A custom event; invalid events are dropped silently. */
  track(name: string, props?: Props): void;
  /** A cart action. */
  cart(action: CartAction, data?: CartData): void;
  /** Sends what is queued now. */
  flush(): void;
}

/** Loads the Wasm and starts the SDK; never rejects. */
export function init(options: Options): Promise<Waymark>;
