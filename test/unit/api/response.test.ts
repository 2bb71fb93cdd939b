import { errorBody, successBody } from '../../../src/api/response';

describe('response envelope', () => {
  test.each<[string, object, object]>([
    ['Buffers become base64', { Plaintext: Buffer.from('hi') }, { Plaintext: 'aGk=' }],
    ['undefined fields are left out, null kept', { A: undefined, B: null, C: 0 }, { B: null, C: 0 }],
    ['nested objects and arrays', { List: [Buffer.from('x'), { K: Buffer.from('y'), N: 1 }] }, { List: ['eA==', { K: 'eQ==', N: 1 }] }],
    ['an empty Buffer is an empty string', { Blob: Buffer.alloc(0) }, { Blob: '' }],
    ['strings and numbers as they are', { KeyId: 'k', Count: 3, Ok: true }, { KeyId: 'k', Count: 3, Ok: true }],
  ])('%s', (_name, result, expected) => {
    expect(JSON.parse(successBody(result, 'rid'))).toEqual({ Response: { ...expected, RequestId: 'rid' } });
  });

  test('RequestId is the service one, never a field the result carried', () => {
    expect(successBody({ RequestId: 'forged', A: 1 }, 'rid')).toBe('{"Response":{"RequestId":"rid","A":1}}');
  });

  test('error envelope', () => {
    expect(JSON.parse(errorBody('InvalidParameter', 'bad', 'rid'))).toEqual({
      Response: { Error: { Code: 'InvalidParameter', Message: 'bad' }, RequestId: 'rid' },
    });
  });
});
