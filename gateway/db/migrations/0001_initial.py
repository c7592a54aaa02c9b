from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from gateway.db.models import EmailStatus, InboxOutcome, LicenseStatus, OrderStatus
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='InboxEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('provider', fields.CharField(max_length=16)),
                ('dedupe_key', fields.CharField(max_length=255)),
                ('kind', fields.CharField(max_length=16)),
                ('order_id', fields.CharField(null=True, db_index=True, max_length=40)),
                ('provider_ref', fields.CharField(null=True, max_length=255)),
                ('payload', fields.TextField(unique=False)),
                ('outcome', fields.CharEnumField(description='APPLIED: applied\nNOOP: noop\nPARKED: parked', enum_type=InboxOutcome, max_length=16)),
                ('detail', fields.TextField(default='', unique=False)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('handled_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'inbox_events', 'app': 'models', 'unique_together': (('provider', 'dedupe_key'),), 'indexes': [Index(fields=['outcome', 'received_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Order',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('product_id', fields.CharField(max_length=64)),
                ('amount_minor', fields.BigIntField()),
                ('currency', fields.CharField(max_length=3)),
                ('provider', fields.CharField(max_length=16)),
                ('provider_ref', fields.CharField(null=True, max_length=255)),
                ('payment_ref', fields.CharField(null=True, db_index=True, max_length=255)),
                ('buyer_email', fields.CharField(max_length=320)),
                ('status', fields.CharEnumField(default=OrderStatus.CREATED, description='CREATED: created\nPENDING: pending\nSETTLED: settled\nFAILED: failed\nREVERSED: reversed', enum_type=OrderStatus, max_length=16)),
                ('status_token', fields.CharField(max_length=64)),
                ('checkout_url', fields.TextField(null=True, unique=False)),
                ('idempotency_key', fields.CharField(null=True, unique=True, max_length=255)),
                ('notes', fields.TextField(default='', unique=False)),
                ('review_reason', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('settled_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'orders', 'app': 'models', 'unique_together': (('provider', 'provider_ref'),), 'indexes': [Index(fields=['status', 'updated_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='License',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('key', fields.CharField(unique=True, max_length=32)),
                ('order', fields.OneToOneField('models.Order', source_field='order_id', db_constraint=True, to_field='id', related_name='license', on_delete=OnDelete.RESTRICT)),
                ('product_id', fields.CharField(max_length=64)),
                ('tier', fields.CharField(max_length=64)),
                ('addons', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('seat_limit', fields.IntField()),
                ('buyer_email', fields.CharField(max_length=320)),
                ('status', fields.CharEnumField(default=LicenseStatus.ACTIVE, description='ACTIVE: active\nREVOKED: revoked', enum_type=LicenseStatus, max_length=16)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoke_reason', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'licenses', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Activation',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('license', fields.ForeignKeyField('models.License', source_field='license_id', db_constraint=True, to_field='id', related_name='activations', on_delete=OnDelete.CASCADE)),
                ('fingerprint', fields.CharField(max_length=128)),
                ('label', fields.CharField(default='', max_length=128)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('last_seen_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'license_activations', 'app': 'models', 'unique_together': (('license', 'fingerprint'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='OutboxEmail',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('order', fields.ForeignKeyField('models.Order', source_field='order_id', db_constraint=True, to_field='id', related_name='emails', on_delete=OnDelete.RESTRICT)),
                ('kind', fields.CharField(max_length=32)),
                ('to_address', fields.CharField(max_length=320)),
                ('subject', fields.CharField(max_length=255)),
                ('body_text', fields.TextField(unique=False)),
                ('body_html', fields.TextField(unique=False)),
                ('status', fields.CharEnumField(default=EmailStatus.PENDING, description='PENDING: pending\nSENT: sent\nDEAD: dead', enum_type=EmailStatus, max_length=16)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('last_error', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'outbox_emails', 'app': 'models', 'unique_together': (('order', 'kind'),), 'indexes': [Index(fields=['status', 'next_attempt_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
